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
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from reportgrid.local.bootstrap import LOCAL_ACCOUNT, local_input_bucket

PROJECT_DIR: Final = Path(__file__).resolve().parents[3]
PARTITION: Final = "aws"
URL_SUFFIX: Final = "amazonaws.com"
# A second region for the synth when the local region runs alone: the app is multi-region
# by construction (the data stack and the peers), the local region runs only its own stack.
DEFAULT_PEER: Final = {"us-east-1": "eu-west-1"}


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


def local_context(regions: tuple[str, ...]) -> dict[str, Any]:
    """cdk.json's context with the local account, regions and input buckets."""
    context: dict[str, Any] = json.loads((PROJECT_DIR / "cdk.json").read_text())["context"]
    if len(regions) == 1:
        regions = (regions[0], DEFAULT_PEER.get(regions[0], "us-east-1"))
    return context | {
        "reportgrid:account": LOCAL_ACCOUNT,
        "reportgrid:regions": list(regions),
        "reportgrid:inputBuckets": [local_input_bucket(r) for r in regions],
        "reportgrid:certificateArns": {
            r: f"arn:aws:acm:{r}:{LOCAL_ACCOUNT}:certificate/local" for r in regions
        },
    }


def synthesize(regions: tuple[str, ...]) -> Path:
    """The app synthesized with the local context, Lambda assets bundled (uv, no Docker),
    from the cache when nothing it is made from changed."""
    context = local_context(regions)
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

    @property
    def service(self) -> str:
        return str(self.environment.get("POWERTOOLS_SERVICE_NAME", self.logical_id))


@dataclass(frozen=True, slots=True)
class EventSourceMapping:
    """AWS::Lambda::EventSourceMapping, with the service defaults AWS applies when a
    property is absent (Lambda docs, CreateEventSourceMapping)."""

    function: str  # logical id
    source: str  # logical id of the stream or queue
    source_type: str  # AWS::Kinesis::Stream or AWS::SQS::Queue
    batch_size: int
    batching_window_seconds: float
    starting_position: str
    bisect_batch_on_function_error: bool
    max_retry_attempts: int  # -1: until the record expires
    max_record_age_seconds: int  # -1: the stream's retention
    parallelization_factor: int
    report_batch_item_failures: bool
    on_failure: str | None  # logical id of the destination queue


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
            )
        return found

    def function_by_handler(self, handler: str) -> LambdaFunction:
        matches = [f for f in self.functions().values() if f.handler == handler]
        if len(matches) != 1:
            raise DeploymentError(f"{self.stack}: {len(matches)} functions run {handler}")
        return matches[0]

    def mappings(self) -> list[EventSourceMapping]:
        found = []
        for resource in self.of_type("AWS::Lambda::EventSourceMapping").values():
            props = resource["Properties"]
            source = _ref_target(props["EventSourceArn"])
            source_type = self.resources[source]["Type"]
            kinesis = source_type == "AWS::Kinesis::Stream"
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
                )
            )
        return found

    def mapping_of(self, function: LambdaFunction) -> EventSourceMapping:
        matches = [m for m in self.mappings() if m.function == function.logical_id]
        if len(matches) != 1:
            raise DeploymentError(f"{function.logical_id}: {len(matches)} event-source mappings")
        return matches[0]

    def containers(self) -> dict[str, Container]:
        found = {}
        for logical_id, resource in self.of_type("AWS::ECS::TaskDefinition").items():
            props = resource["Properties"]
            role = props.get("TaskRoleArn")
            for definition in props["ContainerDefinitions"]:
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
# What Ref and each Fn::GetAtt attribute return, per resource type (CloudFormation's
# "Return values" of each resource), from the resource's physical name.
NameFn = Callable[[str], str]


@dataclass(frozen=True)
class Resolver:
    """Resolves a template value in one regional stack to the local region's value."""

    template: RegionalTemplate
    sqs_endpoint: str  # the queue URL prefix locally (moto: the server's URL)
    account: str = LOCAL_ACCOUNT
    # Physical names of resources whose template sets none (CloudFormation would generate
    # one); the local bootstrap created them under these names.
    generated_names: Mapping[str, str] = field(default_factory=dict)
    secret_arn: Callable[[str], str] | None = None  # secret name -> its local ARN

    @property
    def region(self) -> str:
        return self.template.region

    def resolve(self, value: Any, where: str) -> str:
        try:
            return self._resolve(value)
        except Unresolvable as error:
            raise Unresolvable(f"{where}: {error}") from None

    def _resolve(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        if not isinstance(value, dict) or len(value) != 1:
            raise Unresolvable(f"not a template value: {value!r}")
        ((function, argument),) = value.items()
        if function == "Ref":
            return self._ref(str(argument))
        if function == "Fn::GetAtt":
            return self._get_att(str(argument[0]), str(argument[1]))
        if function == "Fn::Join":
            separator, parts = argument
            return str(separator).join(self._resolve(p) for p in parts)
        if function == "Fn::Select":
            index, items = argument
            resolved = self._list(items)
            return resolved[int(self._resolve(index))]
        if function == "Fn::Sub":
            return self._sub(argument)
        raise Unresolvable(f"{function} is not resolved locally: {value!r}")

    def _list(self, value: Any) -> list[str]:
        if isinstance(value, list):
            return [self._resolve(v) for v in value]
        if isinstance(value, dict) and "Fn::Split" in value:
            separator, text = value["Fn::Split"]
            return self._resolve(text).split(str(separator))
        raise Unresolvable(f"not a list: {value!r}")

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def one(match: re.Match[str]) -> str:
            name = match[1]
            if name in variables:
                return self._resolve(variables[name])
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self._get_att(logical_id, attribute)
            return self._ref(name)

        return re.sub(r"\$\{([^}!]+)\}", one, str(text))

    def _pseudo(self, name: str) -> str:
        values = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::StackName": self.template.stack,
        }
        if name not in values:
            raise Unresolvable(f"pseudo parameter {name} has no local value")
        return values[name]

    def physical_name(self, logical_id: str) -> str:
        resource = self._resource(logical_id)
        props = resource.get("Properties", {})
        key = _NAME_PROPERTY.get(resource["Type"])
        if key and key in props:
            return self._resolve(props[key])
        if logical_id in self.generated_names:
            return self.generated_names[logical_id]
        raise Unresolvable(
            f"{logical_id} ({resource['Type']}) has no name in the template and none locally"
        )

    def _resource(self, logical_id: str) -> dict[str, Any]:
        if logical_id not in self.template.resources:
            raise Unresolvable(f"{logical_id} is not a resource of {self.template.stack}")
        resource: dict[str, Any] = self.template.resources[logical_id]
        return resource

    def _ref(self, name: str) -> str:
        if name.startswith("AWS::"):
            return self._pseudo(name)
        type_ = self._resource(name)["Type"]
        physical = self.physical_name(name)
        if type_ == "AWS::SQS::Queue":
            return f"{self.sqs_endpoint.rstrip('/')}/{self.account}/{physical}"
        if type_ == "AWS::SecretsManager::Secret":
            return self._secret_arn(physical)
        if type_ in _REF_IS_NAME:
            return physical
        raise Unresolvable(f"Ref of a {type_} ({name}) is not resolved locally")

    def _secret_arn(self, name: str) -> str:
        if self.secret_arn is None:
            raise Unresolvable(f"secret {name}: no local secrets to resolve against")
        return self.secret_arn(name)

    def _get_att(self, logical_id: str, attribute: str) -> str:
        type_ = self._resource(logical_id)["Type"]
        name = self.physical_name(logical_id)
        arns = {
            "AWS::SQS::Queue": f"arn:{PARTITION}:sqs:{self.region}:{self.account}:{name}",
            "AWS::Kinesis::Stream": (
                f"arn:{PARTITION}:kinesis:{self.region}:{self.account}:stream/{name}"
            ),
            "AWS::S3::Bucket": f"arn:{PARTITION}:s3:::{name}",
            "AWS::DynamoDB::Table": (
                f"arn:{PARTITION}:dynamodb:{self.region}:{self.account}:table/{name}"
            ),
            "AWS::DynamoDB::GlobalTable": (
                f"arn:{PARTITION}:dynamodb:{self.region}:{self.account}:table/{name}"
            ),
            "AWS::IAM::Role": f"arn:{PARTITION}:iam::{self.account}:role/{name}",
            "AWS::SNS::Topic": f"arn:{PARTITION}:sns:{self.region}:{self.account}:{name}",
        }
        if attribute == "Arn" and type_ in arns:
            return arns[type_]
        if type_ == "AWS::SQS::Queue" and attribute == "QueueName":
            return name
        if type_ == "AWS::SQS::Queue" and attribute == "QueueUrl":
            return self._ref(logical_id)
        raise Unresolvable(f"Fn::GetAtt {logical_id}.{attribute} ({type_}) is not resolved")


# The property that carries each type's physical name.
_NAME_PROPERTY: Final = {
    "AWS::SQS::Queue": "QueueName",
    "AWS::Kinesis::Stream": "Name",
    "AWS::S3::Bucket": "BucketName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::DynamoDB::GlobalTable": "TableName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::IAM::Role": "RoleName",
    "AWS::SNS::Topic": "TopicName",
}
_REF_IS_NAME: Final = frozenset(
    {
        "AWS::Kinesis::Stream",
        "AWS::S3::Bucket",
        "AWS::DynamoDB::Table",
        "AWS::DynamoDB::GlobalTable",
        "AWS::IAM::Role",
    }
)


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
