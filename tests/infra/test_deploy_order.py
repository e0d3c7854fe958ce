"""The deploy order, read from the synthesized cloud assembly (cdk.out/manifest.json and
the templates): every reference one stack makes to a resource another stack creates must
be ordered by a stack dependency, unless nothing checks that resource's existence at
deploy time. And the README's "Order" is exactly the dependency graph.

References are found by name, as a deploy would resolve them: Fn::Join and the pseudo
parameters are flattened to strings first, so an ARN or URL built from parts matches the
name of the bucket, queue, table, secret, export or SSM cross-region parameter it points
at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import ACCOUNT, REPO_ROOT, Synthesized, flatten

# Places where a reference only becomes a value (an IAM statement, a setting read at run
# time, a dashboard's or alarm's metric): CloudFormation and the service accept it whether
# or not the resource exists yet (IAM does not validate resources in policies).
LATE_BOUND = frozenset(
    {
        ("AWS::IAM::Policy", "PolicyDocument"),
        ("AWS::IAM::ManagedPolicy", "PolicyDocument"),
        ("AWS::IAM::Role", "Policies"),
        ("AWS::Lambda::Function", "Environment"),
        ("AWS::ECS::TaskDefinition", "ContainerDefinitions.Environment"),
        ("AWS::CloudWatch::Dashboard", "DashboardBody"),
        ("AWS::CloudWatch::Alarm", "Dimensions"),
        ("AWS::CloudWatch::Alarm", "Metrics"),
    }
)


@dataclass(frozen=True)
class Target:
    stack: str
    what: str
    pattern: re.Pattern[str]


def _bounded(text: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9.-]){re.escape(text)}(?![A-Za-z0-9.-])")


def stack_region(outdir: Path, stack: str) -> str:
    manifest = json.loads((outdir / "manifest.json").read_text())
    environment: str = manifest["artifacts"][stack]["environment"]
    return environment.rsplit("/", 1)[-1]


def dependencies(outdir: Path) -> dict[str, set[str]]:
    """Each stack's stack dependencies (transitively), from cdk.out/manifest.json."""
    artifacts = json.loads((outdir / "manifest.json").read_text())["artifacts"]
    stacks = {k for k, v in artifacts.items() if v["type"] == "aws:cloudformation:stack"}
    direct = {s: {d for d in artifacts[s].get("dependencies", []) if d in stacks} for s in stacks}

    def closure(stack: str) -> set[str]:
        found: set[str] = set()
        todo = list(direct[stack])
        while todo:
            dep = todo.pop()
            if dep not in found:
                found.add(dep)
                todo.extend(direct[dep])
        return found

    return {s: closure(s) for s in stacks}


def templates(synth: Synthesized) -> dict[str, dict[str, Any]]:
    return {
        s.stack_name: json.loads((synth.outdir / s.template_file).read_text())
        for s in synth.deployment.stacks
    }


def targets(synth: Synthesized) -> list[Target]:
    """What each stack creates that another could name."""
    found: list[Target] = []
    for stack, template in templates(synth).items():
        region = stack_region(synth.outdir, stack)
        for resource in template.get("Resources", {}).values():
            kind, props = resource["Type"], resource.get("Properties", {})
            name = None
            if kind == "AWS::S3::Bucket":
                name = props.get("BucketName")
                if isinstance(name, str):
                    found.append(Target(stack, f"bucket {name}", _bounded(name)))
            elif kind == "AWS::SQS::Queue" and isinstance(props.get("QueueName"), str):
                name = props["QueueName"]
                arn = f"sqs:{region}:{ACCOUNT}:{name}"
                url = f"sqs.{region}.amazonaws.com/{ACCOUNT}/{name}"
                found.append(
                    Target(
                        stack,
                        f"queue {name} ({region})",
                        re.compile(rf"(?:{re.escape(arn)}|{re.escape(url)})(?![A-Za-z0-9-])"),
                    )
                )
            elif kind == "AWS::DynamoDB::GlobalTable":
                name = props["TableName"]
                found.append(Target(stack, f"table {name}", re.compile(rf"table/{name}\b")))
            elif kind == "AWS::SecretsManager::Secret" and isinstance(props.get("Name"), str):
                found.append(Target(stack, f"secret {props['Name']}", _bounded(props["Name"])))
            elif kind == "Custom::CrossRegionExportWriter":
                found.extend(
                    Target(stack, f"SSM export {parameter}", _bounded(parameter))
                    for parameter in props["WriterProps"]["exports"]
                )
        for output in template.get("Outputs", {}).values():
            export = output.get("Export", {}).get("Name")
            if isinstance(export, str):
                found.append(Target(stack, f"export {export}", _bounded(f"import:{export}")))
    return found


def fields(resource: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(property path, value) of a resource, with container definitions split by key
    (only their Environment is late-bound)."""
    for key, value in resource.get("Properties", {}).items():
        if resource["Type"] == "AWS::ECS::TaskDefinition" and key == "ContainerDefinitions":
            for container in value:
                for sub, sub_value in container.items():
                    yield f"{key}.{sub}", sub_value
        else:
            yield key, value


@dataclass(frozen=True)
class Reference:
    stack: str
    resource: str
    kind: str
    field: str
    target: Target


def references(synth: Synthesized) -> list[Reference]:
    every = targets(synth)
    found: list[Reference] = []
    for stack, template in templates(synth).items():
        region = stack_region(synth.outdir, stack)
        for logical_id, resource in template.get("Resources", {}).items():
            for field, value in fields(resource):
                text = json.dumps(flatten(value, region))
                found.extend(
                    Reference(stack, logical_id, resource["Type"], field, target)
                    for target in every
                    if target.stack != stack and target.pattern.search(text)
                )
    return found


def test_every_cross_stack_reference_is_ordered_or_late_bound(synth: Synthesized) -> None:
    deps = dependencies(synth.outdir)
    found = references(synth)
    unordered = [
        f"{ref.stack}/{ref.resource} ({ref.kind} {ref.field}) names {ref.target.what} of "
        f"{ref.target.stack}, which it does not depend on"
        for ref in found
        if ref.target.stack not in deps[ref.stack] and (ref.kind, ref.field) not in LATE_BOUND
    ]
    assert not unordered, "\n".join(unordered)
    # The scan sees the references that matter (else it could pass by finding nothing).
    seen = {(r.stack, r.target.stack, r.target.what.split()[0]) for r in found}
    assert ("Reportgrid-eu-west-1", "Reportgrid-Data", "table") in seen
    assert ("Reportgrid-eu-west-1", "Reportgrid-us-east-1", "queue") in seen  # peer standby
    assert ("Reportgrid-eu-west-1-Replication", "Reportgrid-us-east-1", "bucket") in seen
    assert ("Reportgrid-eu-west-1-Replication", "Reportgrid-eu-west-1", "export") in seen
    assert ("Reportgrid-Global", "Reportgrid-eu-west-1", "SSM") in seen


def test_regional_stacks_deploy_in_parallel(synth: Synthesized) -> None:
    deps = dependencies(synth.outdir)
    regional = {s.stack_name for s in synth.deployment.regions.values()}
    for stack in regional:
        assert not deps[stack] & regional, f"{stack} depends on {deps[stack] & regional}"
        assert deps[stack] == {synth.deployment.data.stack_name}
    for stack in synth.deployment.replication.values():
        assert regional <= deps[stack.stack_name]


def test_replication_rules_are_put_by_the_later_stack_only(synth: Synthesized) -> None:
    for stack in synth.deployment.regions.values():
        for bucket in synth.templates[stack.stack_name].find_resources("AWS::S3::Bucket").values():
            assert "ReplicationConfiguration" not in bucket["Properties"]
    for region, stack in synth.deployment.replication.items():
        template = templates(synth)[stack.stack_name]
        (put,) = (r for r in template["Resources"].values() if r["Type"] == "Custom::AWS")
        create = json.loads(flatten(put["Properties"]["Create"], region))
        assert create["action"] == "putBucketReplication"
        rules = create["parameters"]["ReplicationConfiguration"]["Rules"]
        destinations = {rule["Destination"]["Bucket"] for rule in rules}
        peers = synth.config.replication_regions(region)
        assert destinations == {f"arn:aws:s3:::reportgrid-results-{ACCOUNT}-{p}" for p in peers}
        delete = json.loads(flatten(put["Properties"]["Delete"], region))
        assert delete["action"] == "deleteBucketReplication"


def test_globally_named_resources_are_created_once(synth: Synthesized) -> None:
    # IAM role names and S3 bucket names are global (per account / per partition): two
    # stacks creating the same one fail the second deploy.
    names: dict[str, str] = {}
    for stack, template in templates(synth).items():
        for resource in template.get("Resources", {}).values():
            key = {"AWS::IAM::Role": "RoleName", "AWS::S3::Bucket": "BucketName"}.get(
                resource["Type"]
            )
            name = resource.get("Properties", {}).get(key) if key else None
            if isinstance(name, str):
                assert name not in names, f"{name} is created by {names[name]} and {stack}"
                names[name] = stack


def readme_order() -> list[tuple[int, str]]:
    """(step, stack) for each deploy line of README's "### Order" block."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("### Order", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    steps = []
    for line in block.splitlines():
        match = re.match(r"npx aws-cdk@2 deploy (?:-e )?(\S+)\s+# (\d+)\.", line.strip())
        if match:
            steps.append((int(match[2]), match[1]))
    return steps


def test_readme_order_is_the_dependency_graph(synth: Synthesized) -> None:
    deps = dependencies(synth.outdir)
    steps = readme_order()
    step = {stack: number for number, stack in steps}
    assert set(step) == set(deps), "README's Order lists exactly the app's stacks"
    for stack, before in deps.items():
        for dependency in before:
            assert step[dependency] < step[stack], f"{stack} must come after {dependency}"
    # Stacks given the same step really can deploy together.
    for a, number in step.items():
        for b, other in step.items():
            if a != b and number == other:
                assert b not in deps[a], f"{a} and {b} share step {number} but {a} needs {b}"


@pytest.mark.parametrize("region", ["eu-west-1", "us-east-1"])
def test_the_peer_standby_queue_is_named_only_where_existence_is_not_checked(
    synth: Synthesized, region: str
) -> None:
    # The edge and the mirror use the peer's standby queue by name; the peer's regional
    # stack creates it in parallel. IAM grants and environment values do not need it to
    # exist; nothing else (an event source, a subscription, a queue policy) may name it.
    stack = synth.deployment.regions[region].stack_name
    peer = synth.config.peer_region(region)
    assert peer is not None
    peer_stack = synth.deployment.regions[peer].stack_name
    uses = {
        (ref.kind, ref.field)
        for ref in references(synth)
        if ref.stack == stack and ref.target.stack == peer_stack
    }
    assert uses
    assert uses <= LATE_BOUND, uses - LATE_BOUND
