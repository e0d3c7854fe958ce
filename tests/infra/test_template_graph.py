"""The template graph, read from the synthesized cloud assembly (cdk.out/manifest.json and
each stack's template): every reference one stack makes to something another stack creates
is ordered by a stack dependency (transitively), unless nothing checks that thing's
existence at deploy time; every name of ours a template uses is created by some stack; and
no regional stack depends on another, so the regions deploy in parallel.

References are found by name, as a deploy resolves them (Fn::Join and the pseudo
parameters are flattened to strings first):
  - Fn::ImportValue of another stack's Export (exports are per region);
  - CDK's cross-region references: the SSM parameters /cdk/exports/... that an
    ExportsWriter puts in the reading stack's region and an ExportsReader or
    {{resolve:ssm:...}} reads;
  - the ARN, URL or name of a bucket, queue, table, secret or stream of ours (named from
    reportgrid.resources, so starting with resources.PROJECT), in its region: a global
    table is there only where it has a replica, a secret only where it is replicated,
    a queue only in its own region. Bucket names are global.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from reportgrid import resources
from tests.infra.conftest import ACCOUNT, Synthesized, flatten

# Places where a reference only becomes a value (an IAM statement, a setting read at run
# time, a dashboard's or alarm's metric): CloudFormation and the service accept it whether
# or not the resource exists yet (IAM does not validate resources in policies). A task
# definition's Secrets are not among them: ECS resolves them when a task starts, and the
# service's deploy waits for running tasks.
LATE_BOUND: Final = frozenset(
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
# The resource that writes the cross-region SSM parameters creates them, in another region.
_EXPORTS_WRITER: Final = "Custom::CrossRegionExportWriter"

_REGION: Final = r"(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)"
_ACCOUNT: Final = r"\d{12}"
_END: Final = r"(?![A-Za-z0-9_.-])"
# (kind, pattern): each match names a resource by (region, name); no region: a global name.
_NAMES: Final = (
    ("bucket", re.compile(r"arn:aws:s3:::(?P<name>[a-z0-9][a-z0-9.-]*[a-z0-9])" + _END)),
    # Our one plain bucket name of another stack: the peer's results bucket (an env var).
    (
        "bucket",
        re.compile(
            rf"(?<![A-Za-z0-9_.:/-])(?P<name>{resources.RESULTS_BUCKET_PREFIX}-{_ACCOUNT}-"
            rf"[a-z]{{2}}(?:-[a-z]+)+-\d+){_END}"
        ),
    ),
    ("queue", re.compile(rf"arn:aws:sqs:{_REGION}:{_ACCOUNT}:(?P<name>[A-Za-z0-9_-]+){_END}")),
    (
        "queue",
        re.compile(
            rf"https://sqs\.{_REGION}\.amazonaws\.com/{_ACCOUNT}/(?P<name>[A-Za-z0-9_-]+){_END}"
        ),
    ),
    (
        "table",
        re.compile(rf"arn:aws:dynamodb:{_REGION}:{_ACCOUNT}:table/(?P<name>[A-Za-z0-9_.-]+)"),
    ),
    (
        "stream",
        re.compile(rf"arn:aws:kinesis:{_REGION}:{_ACCOUNT}:stream/(?P<name>[A-Za-z0-9_.-]+)"),
    ),
    # IAM names a secret with the six random characters of its ARN as "-??????".
    (
        "secret",
        re.compile(
            rf"arn:aws:secretsmanager:{_REGION}:{_ACCOUNT}:secret:"
            r"(?P<name>[A-Za-z0-9/_+=.@-]+?)(?:-\?{6})?(?![A-Za-z0-9/_+=.@?-])"
        ),
    ),
    # A parameter name, not a prefix of some (an IAM wildcard ".../*").
    (
        "ssm",
        re.compile(r"(?P<name>/cdk/exports/[A-Za-z0-9/_.-]*[A-Za-z0-9_.-])(?![A-Za-z0-9/_.*-])"),
    ),
    ("export", re.compile(r"\{\{import:(?P<name>[^{}]+)\}\}")),
)


@dataclass(frozen=True, order=True)
class Name:
    """Something a stack creates, as others name it."""

    kind: str
    region: str  # "" for a global name
    name: str

    @property
    def ours(self) -> bool:
        """Named by this app (CDK's own exports and parameters, or reportgrid.resources);
        other names (tenants' input buckets, CDK's bootstrap buckets) are not created here."""
        return self.kind in {"ssm", "export"} or self.name.startswith(resources.PROJECT)

    def __str__(self) -> str:
        return f"{self.kind} {self.name}" + (f" ({self.region})" if self.region else "")


@dataclass(frozen=True)
class Assembly:
    """The cloud assembly as the deploy sees it: manifest.json and each stack's template."""

    manifest: dict[str, Any]
    templates: dict[str, dict[str, Any]]

    @classmethod
    def read(cls, outdir: Path) -> Assembly:
        manifest = json.loads((outdir / "manifest.json").read_text())
        templates = {
            name: json.loads((outdir / artifact["properties"]["templateFile"]).read_text())
            for name, artifact in manifest["artifacts"].items()
            if artifact["type"] == "aws:cloudformation:stack"
        }
        return cls(manifest, templates)

    def region(self, stack: str) -> str:
        environment: str = self.manifest["artifacts"][stack]["environment"]
        return environment.rsplit("/", 1)[-1]

    def direct_dependencies(self, stack: str) -> set[str]:
        listed = self.manifest["artifacts"][stack].get("dependencies", [])
        return {d for d in listed if d in self.templates}  # not the asset manifests

    def dependencies(self) -> dict[str, set[str]]:
        """Each stack's stack dependencies, transitively."""

        def closure(stack: str) -> set[str]:
            found: set[str] = set()
            todo = list(self.direct_dependencies(stack))
            while todo:
                dep = todo.pop()
                if dep not in found:
                    found.add(dep)
                    todo.extend(self.direct_dependencies(dep))
            return found

        return {s: closure(s) for s in self.templates}

    def with_dependencies(self, stack: str, dependencies: set[str]) -> Assembly:
        """A copy whose manifest gives `stack` these direct stack dependencies (a dropped
        or added `add_dependency`), the templates unchanged."""
        manifest = copy.deepcopy(self.manifest)
        artifact = manifest["artifacts"][stack]
        others = [d for d in artifact.get("dependencies", []) if d not in self.templates]
        artifact["dependencies"] = sorted(dependencies) + others
        return Assembly(manifest, self.templates)


def _made_by(resource: dict[str, Any], region: str) -> list[Name]:
    """The names of what one resource creates."""
    kind, props = resource["Type"], resource.get("Properties", {})
    literal = {
        "AWS::S3::Bucket": ("bucket", "BucketName", ""),
        "AWS::SQS::Queue": ("queue", "QueueName", region),
        "AWS::Kinesis::Stream": ("stream", "Name", region),
        "AWS::DynamoDB::Table": ("table", "TableName", region),
    }
    if kind in literal:
        what, key, where = literal[kind]
        name = props.get(key)
        return [Name(what, where, name)] if isinstance(name, str) else []
    if kind == "AWS::DynamoDB::GlobalTable":
        return [Name("table", r["Region"], props["TableName"]) for r in props["Replicas"]]
    if kind == "AWS::SecretsManager::Secret" and isinstance(props.get("Name"), str):
        replicas = [r["Region"] for r in props.get("ReplicaRegions", [])]
        return [Name("secret", where, props["Name"]) for where in (region, *replicas)]
    if kind == _EXPORTS_WRITER:
        writer = props["WriterProps"]
        return [Name("ssm", writer["region"], parameter) for parameter in writer["exports"]]
    return []


def created(assembly: Assembly) -> dict[Name, set[str]]:
    """Each name of what the stacks create, and the stacks that create it."""
    found: dict[Name, set[str]] = {}
    for stack, template in assembly.templates.items():
        region = assembly.region(stack)
        names = [n for r in template.get("Resources", {}).values() for n in _made_by(r, region)]
        for output in template.get("Outputs", {}).values():
            export = output.get("Export", {}).get("Name")
            if isinstance(export, str):
                names.append(Name("export", region, export))
        for name in names:
            found.setdefault(name, set()).add(stack)
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


def named(text: str, region: str) -> set[Name]:
    """The names of ours in a flattened value of a stack in `region`."""
    found = set()
    for kind, pattern in _NAMES:
        for match in pattern.finditer(text):
            groups = match.groupdict()
            # Exports and cross-region parameters are read in the stack's own region.
            where = region if kind in {"ssm", "export"} else groups.get("region") or ""
            name = Name(kind, where, groups["name"])
            if name.ours:
                found.add(name)
    return found


@dataclass(frozen=True)
class Reference:
    stack: str
    resource: str
    kind: str
    field: str
    name: Name
    creators: frozenset[str]  # the stacks that create it (none: a dangling name)

    @property
    def late_bound(self) -> bool:
        return (self.kind, self.field) in LATE_BOUND

    def __str__(self) -> str:
        return f"{self.stack}/{self.resource} ({self.kind} {self.field}) names {self.name}"


def references(assembly: Assembly) -> list[Reference]:
    """Every name of ours that a stack uses and does not create itself."""
    made = created(assembly)
    found = []
    for stack, template in assembly.templates.items():
        region = assembly.region(stack)
        for logical_id, resource in template.get("Resources", {}).items():
            if resource["Type"] == _EXPORTS_WRITER:
                continue  # it creates the parameters it names
            for field, value in fields(resource):
                for name in named(json.dumps(flatten(value, region)), region):
                    creators = frozenset(made.get(name, set()))
                    if stack not in creators:
                        found.append(
                            Reference(stack, logical_id, resource["Type"], field, name, creators)
                        )
    return found


def unordered(assembly: Assembly) -> list[str]:
    """The references a deploy could resolve before their target exists."""
    deps = assembly.dependencies()
    return [
        f"{ref}, which {', '.join(sorted(ref.creators))} creates, but {ref.stack} does not "
        f"depend on {' or '.join(sorted(ref.creators))}"
        for ref in references(assembly)
        if ref.creators and not ref.creators & deps[ref.stack] and not ref.late_bound
    ]


def serial_regions(assembly: Assembly, regional: set[str]) -> list[str]:
    """Regional stacks that wait for another regional stack."""
    deps = assembly.dependencies()
    return [
        f"{stack} depends on the regional stack(s) {', '.join(sorted(deps[stack] & regional))}"
        for stack in sorted(regional)
        if deps[stack] & regional
    ]


@pytest.fixture(scope="module")
def assembly(synth: Synthesized) -> Assembly:
    return Assembly.read(synth.outdir)


@pytest.fixture(scope="module")
def regional(synth: Synthesized) -> set[str]:
    return {s.stack_name for s in synth.deployment.regions.values()}


def test_the_assembly_is_the_deployment(synth: Synthesized, assembly: Assembly) -> None:
    assert set(assembly.templates) == {s.stack_name for s in synth.deployment.stacks}


def test_every_cross_stack_reference_is_ordered_or_late_bound(assembly: Assembly) -> None:
    problems = unordered(assembly)
    assert not problems, "\n".join(problems)


def test_every_name_of_ours_is_created_by_some_stack(assembly: Assembly) -> None:
    # A table named in a region without a replica, a secret where it is not replicated, a
    # peer queue or bucket of a region not deployed: late-bound or not, nothing is there.
    dangling = [
        f"{ref}, which no stack creates" for ref in references(assembly) if not ref.creators
    ]
    assert not dangling, "\n".join(dangling)


def test_the_scan_sees_each_kind_of_cross_stack_reference(
    synth: Synthesized, assembly: Assembly
) -> None:
    # Else the tests above could pass by finding nothing.
    data = synth.deployment.data.stack_name
    eu, us = "Reportgrid-eu-west-1", "Reportgrid-us-east-1"
    seen = {
        (r.stack, next(iter(r.creators)), str(r.name)) for r in references(assembly) if r.creators
    }
    peer_bucket = resources.results_bucket_name(ACCOUNT, "us-east-1")
    expected = {
        (eu, data, f"table {resources.TABLE_NAME} (eu-west-1)"),  # a global table replica
        (us, data, f"secret {resources.ID_SECRETS_SECRET_NAME} (us-east-1)"),  # a replica
        (eu, us, f"queue {resources.STANDBY_QUEUE_NAME} (us-east-1)"),  # the peer standby
        (eu, us, f"bucket {peer_bucket}"),  # the replica results bucket
        (f"{eu}-Replication", us, f"bucket {peer_bucket}"),  # a replication destination
    }
    assert expected <= seen, expected - seen
    kinds = {(r.stack, r.name.kind) for r in references(assembly)}
    assert (f"{eu}-Replication", "export") in kinds  # Fn::ImportValue
    assert (synth.deployment.global_.stack_name, "ssm") in kinds  # cross-region reference


def test_regional_stacks_deploy_in_parallel(
    synth: Synthesized, assembly: Assembly, regional: set[str]
) -> None:
    assert not serial_regions(assembly, regional)
    deps = assembly.dependencies()
    for stack in regional:
        assert deps[stack] == {synth.deployment.data.stack_name}
    for stack in synth.deployment.replication.values():
        assert regional <= deps[stack.stack_name]


@pytest.mark.parametrize("region", ["eu-west-1", "us-east-1"])
def test_a_region_names_its_peer_only_where_existence_is_not_checked(
    synth: Synthesized, assembly: Assembly, region: str
) -> None:
    # The edge and the mirror use the peer's standby queue and results bucket by name; the
    # peer's regional stack creates them in parallel. IAM grants and environment values do
    # not need them to exist; nothing else (an event source, a subscription, a queue
    # policy) may name them.
    stack = synth.deployment.regions[region].stack_name
    peer = synth.config.peer_region(region)
    assert peer is not None
    peer_stack = synth.deployment.regions[peer].stack_name
    uses = {
        (ref.kind, ref.field)
        for ref in references(assembly)
        if ref.stack == stack and peer_stack in ref.creators
    }
    assert uses
    assert uses <= LATE_BOUND, uses - LATE_BOUND


def test_every_stack_dependency_is_needed_and_dropping_one_is_caught(
    assembly: Assembly,
) -> None:
    # Drop each direct dependency in turn (an `add_dependency` removed): the check names
    # the stack, the stack it no longer waits for, and the reference that needs it.
    caught = {}
    for stack in assembly.templates:
        for dependency in sorted(assembly.direct_dependencies(stack)):
            mutated = assembly.with_dependencies(
                stack, assembly.direct_dependencies(stack) - {dependency}
            )
            problems = [
                p
                for p in unordered(mutated)
                if p.startswith(f"{stack}/") and f"does not depend on {dependency}" in p
            ]
            caught[stack, dependency] = problems
    assert caught, "the manifest has no stack dependencies"
    missed = [edge for edge, problems in caught.items() if not problems]
    assert not missed, f"no reference needs these dependencies (or the scan misses it): {missed}"


def test_dropping_the_data_dependency_names_both_stacks_and_the_reference(
    synth: Synthesized, assembly: Assembly
) -> None:
    eu = synth.deployment.regions["eu-west-1"].stack_name
    data = synth.deployment.data.stack_name
    mutated = assembly.with_dependencies(eu, assembly.direct_dependencies(eu) - {data})
    problems = unordered(mutated)
    # ECS resolves the task's id secret when a task starts: the replica must exist.
    assert any(
        p.startswith(f"{eu}/")
        and "(AWS::ECS::TaskDefinition ContainerDefinitions.Secrets)" in p
        and f"secret {resources.ID_SECRETS_SECRET_NAME} (eu-west-1)" in p
        and f"which {data} creates" in p
        for p in problems
    ), "\n".join(problems)


def test_a_regional_stack_waiting_for_another_is_caught(
    synth: Synthesized, assembly: Assembly, regional: set[str]
) -> None:
    eu = synth.deployment.regions["eu-west-1"].stack_name
    us = synth.deployment.regions["us-east-1"].stack_name
    mutated = assembly.with_dependencies(eu, assembly.direct_dependencies(eu) | {us})
    assert serial_regions(mutated, regional) == [f"{eu} depends on the regional stack(s) {us}"]


def test_a_region_without_a_table_replica_is_caught(assembly: Assembly) -> None:
    # The data stack's global table loses its eu-west-1 replica: the region's grants name a
    # table that is not there.
    templates = copy.deepcopy(assembly.templates)
    for template in templates.values():
        for resource in template["Resources"].values():
            if resource["Type"] == "AWS::DynamoDB::GlobalTable":
                replicas = resource["Properties"]["Replicas"]
                replicas[:] = [r for r in replicas if r["Region"] != "eu-west-1"]
    dangling = [
        ref for ref in references(Assembly(assembly.manifest, templates)) if not ref.creators
    ]
    assert {str(ref.name) for ref in dangling} == {f"table {resources.TABLE_NAME} (eu-west-1)"}
    assert {ref.stack for ref in dangling} == {"Reportgrid-eu-west-1"}
