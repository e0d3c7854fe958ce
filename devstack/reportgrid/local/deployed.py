"""The deployment as the local region runs it: synthesized by the CDK app (with the local
account, regions and input bucket as context), then read back from the cloud assembly.

Everything a process is started with comes from here: each Lambda function's handler,
runtime, timeout, memory, environment and asset directory, its event-source mapping, and
each Fargate container's command, environment and secrets. Template values that refer to
resources (Ref, Fn::GetAtt, Fn::Join, Fn::Sub, pseudo parameters) are resolved to the local
region's resources, which have the same physical names (core/reportgrid/resources.py). A
value that cannot be resolved is an error naming the variable, never a guess.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from reportgrid.local.bootstrap import LOCAL_ACCOUNT, local_input_bucket
from reportgrid.local.iam.patterns import Unresolved
from reportgrid.local.iam.resolve import Localization, Stack, StackResolver

_AWS_SIDECAR_IMAGE: Final = "public.ecr.aws/xray/aws-xray-daemon:"

PROJECT_DIR: Final = Path(__file__).resolve().parents[3]
# A second region for the synth when the local region runs alone: the app is multi-region
# by construction (the data stack and the peers), the local region runs only its own stack.
DEFAULT_PEER: Final = {"us-east-1": "eu-west-1"}
# The source type of a mapping on a DynamoDB table's stream (not a CloudFormation type: the
# template names the table, or a custom resource that reads its stream ARN).
DYNAMODB_STREAM: Final = "DynamoDB::Stream"


class DeploymentError(RuntimeError):
    """The synth failed, or the template holds something the local region cannot run."""


class Unresolvable(DeploymentError):
    """A template value that does not resolve to a local value."""


# Everything a synthesized assembly (and an image tree) is made from: a change to any of
# these is a new cache entry; nothing else can change what the app synthesizes.
SYNTH_INPUTS: Final = ("app.py", "cdk.json", "pyproject.toml", "uv.lock", "Dockerfile")
SYNTH_INPUT_DIRS: Final = ("cdk", "client", "core", "edge", "workers")
CACHE_DIR: Final = PROJECT_DIR / ".reportgrid" / "cache"


def inputs_digest(extra: str = "") -> str:
    """A digest of every file the deployment is built from (and `extra`, e.g. the context)."""
    digest = hashlib.sha256(extra.encode())
    paths = [PROJECT_DIR / name for name in SYNTH_INPUTS]
    for folder in SYNTH_INPUT_DIRS:
        paths += sorted(
            p
            for p in (PROJECT_DIR / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        )
    for path in paths:
        digest.update(str(path.relative_to(PROJECT_DIR)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time per cache entry (parallel test workers, two terminals)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cached(kind: str, key: str, build: Callable[[Path], object]) -> Path:
    """The cache entry `kind-key`, built by `build(directory)` into a scratch directory and
    renamed into place only when complete, so a reader never sees half of one."""
    entry = CACHE_DIR / f"{kind}-{key}"
    with _locked(CACHE_DIR / f".{kind}-{key}.lock"):
        if not (entry / ".complete").is_file():
            scratch = CACHE_DIR / f".{kind}-{key}.building"
            shutil.rmtree(scratch, ignore_errors=True)
            build(scratch)
            (scratch / ".complete").write_text(key)
            shutil.rmtree(entry, ignore_errors=True)
            scratch.rename(entry)
    return entry


def local_context(regions: tuple[str, ...], *, lease_arbiter: bool = False) -> dict[str, Any]:
    """cdk.json's context with the local account, regions and input buckets (and, with
    `lease_arbiter`, the MRSC lease table of docs/MULTI_REGION.md)."""
    context: dict[str, Any] = json.loads((PROJECT_DIR / "cdk.json").read_text())["context"]
    if len(regions) == 1:
        regions = (regions[0], DEFAULT_PEER.get(regions[0], "us-east-1"))
    # cdk.json's dials name its own regions; a drill on another pair keeps only theirs.
    dials = context.get("reportgrid:trafficDials", {})
    return context | {
        "reportgrid:trafficDials": {r: dial for r, dial in dials.items() if r in regions},
        **({"reportgrid:leaseArbiter": True} if lease_arbiter else {}),
        "reportgrid:account": LOCAL_ACCOUNT,
        "reportgrid:regions": list(regions),
        "reportgrid:inputBuckets": [local_input_bucket(r) for r in regions],
        "reportgrid:certificateArns": {
            r: f"arn:aws:acm:{r}:{LOCAL_ACCOUNT}:certificate/local" for r in regions
        },
    }


def synthesize(regions: tuple[str, ...], *, lease_arbiter: bool = False) -> Path:
    """The app synthesized with the local context, Lambda assets bundled (uv, no Docker),
    from the cache when nothing it is made from changed."""
    context = local_context(regions, lease_arbiter=lease_arbiter)
    text = json.dumps(context, sort_keys=True)
    return cached("cdk.out", inputs_digest(text), lambda outdir: _synth(outdir, context))


def _synth(outdir: Path, context: dict[str, Any]) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps(context),
        "CDK_OUTDIR": str(outdir),
        "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "app.py")],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise DeploymentError(f"cdk synth failed:\n{result.stderr.strip()[-3000:]}")


@dataclass(frozen=True, slots=True)
class LambdaFunction:
    logical_id: str
    handler: str  # module.attribute, as the runtime reads it
    runtime: str
    timeout_seconds: int
    memory_mib: int
    environment: Mapping[str, Any]  # unresolved template values
    asset_dir: Path
    role: str  # logical id of the execution role
    active_tracing: bool = False  # TracingConfig Mode Active

    @property
    def service(self) -> str:
        return str(self.environment.get("POWERTOOLS_SERVICE_NAME", self.logical_id))


@dataclass(frozen=True, slots=True)
class EventSourceMapping:
    """AWS::Lambda::EventSourceMapping, with the service defaults AWS applies when a
    property is absent (Lambda docs, CreateEventSourceMapping)."""

    function: str  # logical id
    source: str  # logical id of the stream, queue or table (or what reads its stream ARN)
    # AWS::Kinesis::Stream, AWS::SQS::Queue or DYNAMODB_STREAM (a table's stream)
    source_type: str
    batch_size: int
    batching_window_seconds: float
    starting_position: str
    bisect_batch_on_function_error: bool
    max_retry_attempts: int  # -1: until the record expires
    max_record_age_seconds: int  # -1: the stream's retention
    parallelization_factor: int
    report_batch_item_failures: bool
    on_failure: str | None  # logical id of the destination queue
    # FilterCriteria.Filters[].Pattern (JSON text); a record matching any one is delivered.
    filter_patterns: tuple[str, ...] = ()
    table_name: str | None = None  # the table whose stream a DYNAMODB_STREAM mapping reads


@dataclass(frozen=True, slots=True)
class ScheduledInvocation:
    """An AWS::Scheduler::Schedule whose target is one of the stack's functions (a Lambda
    templated target: Invoke with the target's Input)."""

    name: str
    group: str
    function: str  # logical id
    role: str  # logical id of Scheduler's execution role for it
    expression: str  # rate(...) or cron(...), as the template gives it
    input: str  # the target's Input, context attributes (<aws.scheduler.*>) unfilled
    enabled: bool
    flexible_window: bool  # FlexibleTimeWindow Mode is not OFF


@dataclass(frozen=True, slots=True)
class Container:
    task: str  # logical id of the task definition
    name: str
    command: tuple[str, ...] | None
    entry_point: tuple[str, ...] | None
    environment: tuple[tuple[str, Any], ...]
    secrets: tuple[tuple[str, Any], ...]
    task_role: str | None
    image_target: str


@dataclass
class RegionalTemplate:
    stack: str
    region: str
    template: dict[str, Any]
    assets: dict[str, Path]  # S3 object key -> staged directory
    image_targets: dict[str, str]  # image asset hash -> docker build target
    resources: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.resources = self.template["Resources"]

    def of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == type_}

    def functions(self) -> dict[str, LambdaFunction]:
        """Our Python functions (CDK's own custom-resource handlers are not the service)."""
        found = {}
        for logical_id, resource in self.of_type("AWS::Lambda::Function").items():
            props = resource["Properties"]
            if not str(props.get("Runtime", "")).startswith("python"):
                continue
            code = props["Code"]
            if "S3Key" not in code or code["S3Key"] not in self.assets:
                raise DeploymentError(f"{logical_id}: its code is not a staged asset: {code}")
            found[logical_id] = LambdaFunction(
                logical_id=logical_id,
                handler=props["Handler"],
                runtime=props["Runtime"],
                timeout_seconds=int(props.get("Timeout", 3)),
                memory_mib=int(props.get("MemorySize", 128)),
                environment=props.get("Environment", {}).get("Variables", {}),
                asset_dir=self.assets[code["S3Key"]],
                role=_ref_target(props["Role"]),
                active_tracing=props.get("TracingConfig", {}).get("Mode") == "Active",
            )
        return found

    def function_by_handler(self, handler: str) -> LambdaFunction:
        matches = [f for f in self.functions().values() if f.handler == handler]
        if len(matches) != 1:
            raise DeploymentError(f"{self.stack}: {len(matches)} functions run {handler}")
        return matches[0]

    def stream_table(self, arn: Any) -> str | None:
        """The table whose stream an EventSourceArn names: a GetAtt StreamArn of a table, or
        the output Table.LatestStreamArn of an AwsCustomResource calling DescribeTable (CDK's
        way to read the stream ARN of a table another stack owns); None otherwise."""
        if not (isinstance(arn, dict) and "Fn::GetAtt" in arn):
            return None
        target, attribute = arn["Fn::GetAtt"][0], str(arn["Fn::GetAtt"][1])
        resource = self.resources.get(target, {})
        props = resource.get("Properties", {})
        if resource.get("Type") in ("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable"):
            return str(props["TableName"]) if attribute == "StreamArn" else None
        if resource.get("Type") != "Custom::AWS" or attribute != "Table.LatestStreamArn":
            return None
        call = props.get("Create")
        if not isinstance(call, str):
            raise DeploymentError(f"{target}: its DescribeTable call is not literal: {call!r}")
        sdk_call = json.loads(call)
        if str(sdk_call.get("action", "")).lower() != "describetable":
            return None
        return str(sdk_call["parameters"]["TableName"])

    def mappings(self) -> list[EventSourceMapping]:
        found = []
        for resource in self.of_type("AWS::Lambda::EventSourceMapping").values():
            props = resource["Properties"]
            source = _ref_target(props["EventSourceArn"])
            table = self.stream_table(props["EventSourceArn"])
            source_type = DYNAMODB_STREAM if table else self.resources[source]["Type"]
            # Stream sources (Kinesis, DynamoDB) default to 100 records, SQS to 10.
            kinesis = source_type in ("AWS::Kinesis::Stream", DYNAMODB_STREAM)
            destination = props.get("DestinationConfig", {}).get("OnFailure", {})
            found.append(
                EventSourceMapping(
                    function=_ref_target(props["FunctionName"]),
                    source=source,
                    source_type=source_type,
                    batch_size=int(props.get("BatchSize", 100 if kinesis else 10)),
                    batching_window_seconds=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                    starting_position=str(props.get("StartingPosition", "LATEST")),
                    bisect_batch_on_function_error=bool(
                        props.get("BisectBatchOnFunctionError", False)
                    ),
                    max_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
                    max_record_age_seconds=int(props.get("MaximumRecordAgeInSeconds", -1)),
                    parallelization_factor=int(props.get("ParallelizationFactor", 1)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in props.get("FunctionResponseTypes", []),
                    on_failure=_ref_target(destination["Destination"])
                    if "Destination" in destination
                    else None,
                    filter_patterns=tuple(
                        str(f["Pattern"])
                        for f in props.get("FilterCriteria", {}).get("Filters", [])
                    ),
                    table_name=table,
                )
            )
        return found

    def mapping_of(self, function: LambdaFunction) -> EventSourceMapping:
        matches = [m for m in self.mappings() if m.function == function.logical_id]
        if len(matches) != 1:
            raise DeploymentError(f"{function.logical_id}: {len(matches)} event-source mappings")
        return matches[0]

    def schedules(self) -> list[ScheduledInvocation]:
        """The schedules that invoke a function of the stack (a target that is not one of
        them is no function the local region runs)."""
        functions = set(self.of_type("AWS::Lambda::Function"))
        found = []
        for logical_id, resource in self.of_type("AWS::Scheduler::Schedule").items():
            props = resource["Properties"]
            target = props["Target"]
            function = _ref_target(target["Arn"])
            if function not in functions:
                continue
            found.append(
                ScheduledInvocation(
                    name=str(props.get("Name", logical_id)),
                    group=str(props.get("GroupName", "default")),
                    function=function,
                    role=_ref_target(target["RoleArn"]),
                    expression=str(props["ScheduleExpression"]),
                    input=str(target.get("Input", "{}")),
                    enabled=props.get("State", "ENABLED") == "ENABLED",
                    flexible_window=props.get("FlexibleTimeWindow", {}).get("Mode") != "OFF",
                )
            )
        return found

    def containers(self) -> dict[str, Container]:
        found = {}
        for logical_id, resource in self.of_type("AWS::ECS::TaskDefinition").items():
            props = resource["Properties"]
            role = props.get("TaskRoleArn")
            for definition in props["ContainerDefinitions"]:
                if str(definition["Image"]).startswith(_AWS_SIDECAR_IMAGE):
                    # The X-Ray daemon sidecar (cdk/constructs/queue_worker.py): AWS's, not
                    # ours to run; locally the workers' UDP segments go unread.
                    continue
                image = json.dumps(definition["Image"])
                targets = [t for key, t in self.image_targets.items() if key in image]
                if len(targets) != 1:
                    raise DeploymentError(f"{definition['Name']}: image {image} is not an asset")
                found[definition["Name"]] = Container(
                    task=logical_id,
                    name=definition["Name"],
                    command=tuple(definition["Command"]) if "Command" in definition else None,
                    entry_point=tuple(definition["EntryPoint"])
                    if "EntryPoint" in definition
                    else None,
                    environment=tuple(
                        (e["Name"], e["Value"]) for e in definition.get("Environment", [])
                    ),
                    secrets=tuple(
                        (s["Name"], s["ValueFrom"]) for s in definition.get("Secrets", [])
                    ),
                    task_role=_ref_target(role) if role else None,
                    image_target=targets[0],
                )
        return found


def _ref_target(value: Any) -> str:
    """The logical id a Ref / Fn::GetAtt points at."""
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    raise DeploymentError(f"not a reference to a resource of the stack: {value!r}")


@dataclass(frozen=True)
class Assembly:
    outdir: Path
    manifest: dict[str, Any]

    @classmethod
    def read(cls, outdir: Path) -> Assembly:
        path = outdir / "manifest.json"
        if not path.is_file():
            raise DeploymentError(f"{outdir} holds no cloud assembly (manifest.json)")
        return cls(outdir, json.loads(path.read_text()))

    def regional(self, region: str) -> RegionalTemplate:
        """The stack that runs the region's services (the one with ECS task definitions)."""
        for name, artifact in self.manifest["artifacts"].items():
            if artifact.get("type") != "aws:cloudformation:stack":
                continue
            if not str(artifact.get("environment", "")).endswith(f"/{region}"):
                continue
            template = json.loads(
                (self.outdir / artifact["properties"]["templateFile"]).read_text()
            )
            if not any(
                r["Type"] == "AWS::ECS::TaskDefinition" for r in template["Resources"].values()
            ):
                continue
            assets = json.loads((self.outdir / f"{name}.assets.json").read_text())
            files = {
                destination["objectKey"]: self.outdir / asset["source"]["path"]
                for asset in assets.get("files", {}).values()
                for destination in asset["destinations"].values()
            }
            images = {
                key: str(asset["source"].get("dockerBuildTarget", ""))
                for key, asset in assets.get("dockerImages", {}).items()
            }
            return RegionalTemplate(name, region, template, files, images)
        raise DeploymentError(f"the assembly in {self.outdir} has no service stack in {region}")


# ---------------------------------------------------------------------------------------
# Template values -> local values
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolver:
    """Resolves a template value of one regional stack to the local region's value, with
    the same intrinsic walker the IAM evaluator uses (reportgrid/local/iam/resolve.py), so
    a process's settings and its permissions are read from the template alike."""

    template: RegionalTemplate
    account: str = LOCAL_ACCOUNT
    # "LogicalId" (its Ref) or "LogicalId.Attribute" -> the local value, for resources the
    # template leaves unnamed (CloudFormation would generate a name) or whose local value
    # differs (a secret's ARN carries moto's random suffix).
    physical: Mapping[str, str] = field(default_factory=dict)

    @property
    def region(self) -> str:
        return self.template.region

    def _walker(self) -> StackResolver:
        stack = Stack(self.template.stack, self.template.template, self.region, self.account)
        local = Localization(region=self.region, account=self.account, physical=self.physical)
        return StackResolver(stack, local, lambda name: Unresolved(f"Fn::ImportValue {name}"))

    def resolve(self, value: Any, where: str) -> str:
        resolved = self._walker().resolve(value)
        if isinstance(resolved, Unresolved):
            raise Unresolvable(f"{where}: {resolved.reason}")
        if not isinstance(resolved, str | int | float | bool):
            raise Unresolvable(f"{where}: not a single value: {resolved!r}")
        if isinstance(resolved, bool):
            return "true" if resolved else "false"
        return str(resolved)


def resolve_all(resolver: Resolver, values: Mapping[str, Any], where: str) -> dict[str, str]:
    """Every variable resolved, or one error that names each that is not."""
    resolved: dict[str, str] = {}
    problems: list[str] = []
    for name, value in values.items():
        try:
            resolved[name] = resolver.resolve(value, f"{where} {name}")
        except Unresolvable as error:
            problems.append(str(error))
    if problems:
        raise Unresolvable("; ".join(problems))
    return resolved
