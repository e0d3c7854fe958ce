"""Every metric of ours that an alarm or a dashboard reads is emitted by some component.

The synthesized templates say what the alarms and dashboards read (namespace, name, exact
dimensions). A local region (`reportgrid-dev`) then serves a short, ordinary workload
through the `reportgrid` CLI: light and heavy reports that succeed, one of each that fails
on its input, and repeated reads. It is stopped with Ctrl-C, so the edge flushes its last
metrics, and the EMF documents in the logs under <state>/logs (each process's, and each
Lambda function's under functions/<region>/) are what CloudWatch would extract metrics
from. Metrics of AWS namespaces (AWS/Lambda, AWS/SQS, ...) are AWS's to publish.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cdk.slo import GET_AVAILABILITY, SUBMIT_AVAILABILITY
from reportgrid.local import emf
from reportgrid.local.bootstrap import client, local_input_bucket
from reportgrid.local.dev import DEV_TENANT
from reportgrid.local.scheduler_source import last_ran, set_clock
from reportgrid.resources import (
    METRIC,
    METRIC_SERVICE_DIMENSION,
    METRIC_TENANT_CLASS_DIMENSION,
    METRICS_NAMESPACE,
    REQUEST_FAULT_CODES,
    SCHEDULER_SCHEDULE_NAME,
    SERVICE_EDGE,
    SERVICE_QUEUE_WORKER,
    SERVICE_STREAM_FAILURES,
    SERVICE_STREAM_WORKER,
    SERVICE_WEBHOOKS,
    TENANT_CLASSES,
    tenant_input_prefix,
)
from tests.e2e import test_local_region as local_region
from tests.e2e.test_local_region import REGION, DevRegion
from tests.infra import conftest as infra
from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.slow

# Fixtures of other modules, used here: a local region of this module's own, and the
# synthesized app (Lambda bundling skipped).
dev = local_region.dev
synth = infra.synth

# Metrics the alarms read that only a fault makes a component emit, each with why, and
# the fault-suite test that asserts the emission. None today: the edge emits RequestFaults
# (0 when nothing failed) with every latency rollup, and a report failing on its input
# makes each worker emit ReportsFailed.
FAULT_ONLY: dict[emf.MetricKey, str] = (
    {
        # The availability SLOs count each server-fault status of their method (cdk/slo.py);
        # a healthy run answers none of them. tests/infra/test_observability pins the codes.
        emf.MetricKey.of(
            METRICS_NAMESPACE,
            METRIC.REQUESTS,
            {METRIC_SERVICE_DIMENSION: SERVICE_EDGE, "Method": slo.method, "Code": code},
        ): f"{slo.name}: only when {slo.method} ends {code}"
        for slo in (SUBMIT_AVAILABILITY, GET_AVAILABILITY)
        for code in sorted(REQUEST_FAULT_CODES)
    }
    | {
        emf.MetricKey.of(
            METRICS_NAMESPACE, METRIC.STREAM_RECORDS_EXPIRED, {METRIC_SERVICE_DIMENSION: service}
        ): "ReportsLost: emitted by tests/faults/test_stream_failures (records past retention)"
        for service in (SERVICE_STREAM_FAILURES,)
    }
    | {
        emf.MetricKey.of(
            METRICS_NAMESPACE, METRIC.POISON_RECORDS, {METRIC_SERVICE_DIMENSION: service}
        ): "PoisonTasks: only for an undecodable task record (tests/faults poison scenarios)"
        for service in (SERVICE_STREAM_WORKER, SERVICE_STREAM_FAILURES)
    }
    | {
        emf.MetricKey.of(
            METRICS_NAMESPACE,
            METRIC.TASKS_DEFERRED,
            {METRIC_SERVICE_DIMENSION: service, METRIC_TENANT_CLASS_DIMENSION: tenant_class},
        ): "only over a max_running (tests/faults/test_fairness runs it; emission unasserted)"
        for service in (SERVICE_STREAM_WORKER, SERVICE_QUEUE_WORKER)
        for tenant_class in TENANT_CLASSES
    }
    | {
        emf.MetricKey.of(
            METRICS_NAMESPACE, METRIC.SLOT_WAIT, {METRIC_SERVICE_DIMENSION: SERVICE_QUEUE_WORKER}
        ): "only for a put-off task (tests/faults/test_fairness runs it; emission unasserted)"
    }
    | {
        emf.MetricKey.of(
            METRICS_NAMESPACE, METRIC.SLOTS_FAIL_OPEN, {METRIC_SERVICE_DIMENSION: service}
        ): "only with the cache down (test_tenant_slots runs it; emission unasserted)"
        for service in (SERVICE_STREAM_WORKER, SERVICE_QUEUE_WORKER)
    }
    | {
        emf.MetricKey.of(
            METRICS_NAMESPACE, name, {METRIC_SERVICE_DIMENSION: SERVICE_WEBHOOKS}
        ): "only for a report or tenant with a webhook URL (none in this workload)"
        for name in (
            METRIC.WEBHOOKS_DELIVERED,
            METRIC.WEBHOOK_ATTEMPTS_FAILED,
            METRIC.WEBHOOKS_GIVEN_UP,
        )
    }
)

SUMMARY = [
    "--param",
    'aggregates=[{"op": "sum", "column": "amount"}]',
    "--param",
    'group_by=["region"]',
]


@dataclass(frozen=True)
class Emitted:
    by_log: dict[emf.MetricKey, set[str]]
    logs: dict[str, int]  # log name -> EMF documents in it


def _state_dir(region: DevRegion) -> Path:
    args = [str(arg) for arg in region.process.args]  # the fixture's argv list
    return Path(args[args.index("--state-dir") + 1])


def _final_state(region: DevRegion, *argv: str) -> dict[str, object]:
    result = region.cli("submit", *argv, "--wait", "--json")
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr
    final: dict[str, object] = json.loads(lines[-1])
    return final


@pytest.fixture(scope="module")
def emitted(dev: DevRegion, tmp_path_factory: pytest.TempPathFactory) -> Emitted:
    data = tmp_path_factory.mktemp("inputs") / "sales.csv"
    data.write_text("region,amount\neu,1\nus,2\neu,3\n")
    s3 = client("s3", REGION, dev.moto_url)
    key = tenant_input_prefix(DEV_TENANT) + "sales.csv"
    s3.put_object(Bucket=local_input_bucket(REGION), Key=key, Body=data.read_bytes())
    bucket = f"s3://{local_input_bucket(REGION)}/"
    # Light (stream worker) and heavy (queue worker: S3 input, or a heavy kind) reports
    # that succeed, and one of each that fails on its input.
    outcomes = {
        "light": _final_state(dev, "summary", "--input", str(data), *SUMMARY),
        "light, no such column": _final_state(
            dev, "summary", "--input", str(data), "--param", 'group_by=["nope"]', *SUMMARY[:2]
        ),
        "heavy": _final_state(dev, "synthetic_heavy", "--param", "output_rows=5"),
        "heavy over S3": _final_state(
            dev, "summary", "--input-s3", bucket + key, "--format", "csv", *SUMMARY
        ),
        "heavy, no such input": _final_state(
            dev,
            "summary",
            "--input-s3",
            f"{bucket}{tenant_input_prefix(DEV_TENANT)}missing.csv",
            "--format",
            "csv",
            *SUMMARY,
        ),
    }
    states = {what: final["state"] for what, final in outcomes.items()}
    assert states == {
        "light": "REPORT_STATE_SUCCEEDED",
        "light, no such column": "REPORT_STATE_FAILED",
        "heavy": "REPORT_STATE_SUCCEEDED",
        "heavy over S3": "REPORT_STATE_SUCCEEDED",
        "heavy, no such input": "REPORT_STATE_FAILED",
    }, outcomes
    report_id = str(outcomes["light"]["report_id"])
    for _ in range(2):  # the second read is answered from the edge's cache
        assert dev.cli("get", report_id).returncode == 0
    _fire_a_schedule(dev)
    # Ctrl-C: the edge drains and flushes what it gathered since its last minute.
    dev.process.send_signal(signal.SIGINT)
    assert dev.process.wait(60) == 0, "\n".join(dev.lines[-30:])
    logs = _state_dir(dev) / "logs"
    counts = {}
    for name, path in emf.log_files(logs).items():
        with path.open(errors="replace") as lines:
            counts[name] = sum(1 for _ in emf.emf_documents(lines))
    return Emitted(emf.emitted_by_log(logs), counts)


def _fire_a_schedule(dev: DevRegion) -> None:
    """A rate schedule, and the local scheduler's clock moved past its first fire (the edge
    files it by the wall clock): the scheduler's fire metrics come from fires."""
    created = dev.cli("schedule", "create", "--kind", "synthetic", "--rate", "1 minute", "--json")
    assert created.returncode == 0, created.stderr
    clock = _state_dir(dev) / "clock"
    past_first_fire = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=3)
    set_clock(clock, past_first_fire)
    deadline = time.monotonic() + 60
    never = datetime.min.replace(tzinfo=UTC)
    while (last_ran(clock, REGION, SCHEDULER_SCHEDULE_NAME) or never) < past_first_fire:
        assert time.monotonic() < deadline, "the local scheduler did not run"
        time.sleep(0.2)


def _reads(synth: Synthesized) -> list[emf.MetricRead]:
    reads = emf.assembly_metrics(synth.outdir)
    assert reads, "the templates read no metric at all"
    return reads


def test_every_metric_read_is_ours_or_an_aws_services(synth: Synthesized) -> None:
    # A namespace that is neither (a typo of ours) names a metric nothing ever emits.
    strays = [str(r) for r in _reads(synth) if not (r.key.ours or r.key.aws)]
    assert not strays, "\n".join(strays)


def test_every_alarm_and_dashboard_metric_of_ours_was_emitted(
    synth: Synthesized, emitted: Emitted
) -> None:
    reads = [r for r in _reads(synth) if r.key.ours]
    # The alarms page on our metrics too, not only on AWS's.
    assert any(r.reader.startswith("alarm ") for r in reads)
    missing: dict[emf.MetricKey, list[str]] = {}
    for read in reads:
        if read.key not in emitted.by_log and read.key not in FAULT_ONLY:
            missing.setdefault(read.key, []).append(f"{read.stack} {read.reader}")
    lines = []
    for key, readers in sorted(missing.items()):
        # The same name under other dimensions is a different metric to CloudWatch.
        near = sorted(
            str(k) for k in emitted.by_log if (k.namespace, k.name) == (key.namespace, key.name)
        )
        lines.append(
            f"{key} is read by {', '.join(sorted(set(readers)))}; never emitted"
            + (f" (emitted only as {', '.join(near)})" if near else "")
        )
    assert not lines, "\n".join([*lines, f"EMF documents per log: {emitted.logs}"])


def test_fault_only_metrics_are_read_by_the_templates(synth: Synthesized) -> None:
    # An entry for a metric nothing reads any more would excuse nothing; drop it.
    read = {r.key for r in _reads(synth)}
    assert set(FAULT_ONLY) <= read, set(FAULT_ONLY) - read
