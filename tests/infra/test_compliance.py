"""cdk-nag AwsSolutions on every stack (zero unacknowledged findings) and cfn-lint on every
synthesized template (zero errors)."""

from __future__ import annotations

from typing import Any

import pytest
from cfnlint.api import lint  # type: ignore[import-untyped]

from tests.infra.conftest import NAG_PROBE_STACK, Synthesized


def test_cdk_nag_finds_nothing_unacknowledged(nag_report: dict[str, Any]) -> None:
    (plugin,) = (
        p for p in nag_report["report"]["pluginReports"] if p["pluginName"] == "AwsSolutions"
    )
    findings = {
        (v["ruleName"], c["constructPath"])
        for v in plugin["violations"]
        for c in v["violatingConstructs"]
    }
    ours = {f for f in findings if not f[1].startswith(f"{NAG_PROBE_STACK}/")}
    assert ours == set()
    # The probe's findings are there: the pack ran, and a finding fails synth.
    assert ("AwsSolutions-SQS4", f"{NAG_PROBE_STACK}/UnsafeQueue/Resource") in findings
    assert "ValidationFailed" in (nag_report["error"] or "")


@pytest.mark.slow
def test_cfn_lint_reports_no_errors(synth: Synthesized) -> None:
    errors = []
    for stack in synth.deployment.stacks:
        path = synth.outdir / stack.template_file
        # Each template checked against the region it deploys to.
        matches = lint(path.read_text(), regions=[stack.region])
        errors += [f"{path.name}: {m}" for m in matches if m.rule.id.startswith("E")]
    assert errors == []
    assert len(synth.deployment.stacks) == 6  # data, 2 regions, 2 replication, global
