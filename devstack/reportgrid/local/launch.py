"""Start each component of a local region as `cdk deploy` would run it (docs/LOCAL_REGION.md).

- Fargate containers: the argv ECS starts (the image target's ENTRYPOINT from the Dockerfile,
  then the task definition's Command), under the image's Python with only the image's tree
  (/app/lib, built by cdk/artifacts.py as the Dockerfile does) on the path; the environment
  is the container's Environment and Secrets from the template, resolved to the local
  region (a secret's value is read from the local Secrets Manager, as the ECS agent does).
- Lambda functions: from their synthesized asset, in their own process, under their
  runtime's Python (reportgrid/local/lambda_host.py), with the template's environment,
  timeout and memory, fed by an event source configured from the template's mapping.

Only a few values differ from the template, each for a reason the local machine imposes:
the AWS endpoint and credentials (moto), the edge's port and process count (ports are
shared on one machine), and the drain grace (a developer does not wait 20 s on Ctrl-C).
They are listed in LOCAL_OVERRIDES and nowhere else; a drill or a test may also change the
few settings in TUNING_OVERRIDES (for a container or a Lambda host alike).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import ClientError
from pydantic import AliasChoices

from reportgrid import resources
from reportgrid.local.bootstrap import LOCAL_ACCOUNT, LOCAL_CREDENTIALS
from reportgrid.local.bootstrap import client as local_client
from reportgrid.local.deployed import (
    PROJECT_DIR,
    Assembly,
    Container,
    DeploymentError,
    EventSourceMapping,
    LambdaFunction,
    RegionalTemplate,
    Resolver,
    cached,
    inputs_digest,
    resolve_all,
)
from reportgrid.local.dockerfile import exec_form, last, stages
from reportgrid.local.iam import enforce as iam_enforce
from reportgrid.local.interpreters import find_python
from reportgrid.local.lambda_host import IAM_SPEC_VARIABLE, LambdaHost, runtime_python
from reportgrid.settings import SECRET_VARIABLES, Settings

E = resources.ENV
# The settings a local process gets that differ from the template (see the docstring).
LOCAL_OVERRIDES: Final = (
    E.AWS_ENDPOINT_URL,
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    E.EDGE_PORT,
    E.EDGE_HOST,
    E.EDGE_WORKERS,
    E.DRAIN_GRACE_SECONDS,
    # The local region's webhook receivers listen on loopback (never set by the template).
    E.WEBHOOK_ALLOW_LOOPBACK,
)
# Settings a drill or a test changes on top of the template: timings shortened to see a lost
# worker's task come back in seconds rather than minutes (reportgrid-drill; tests/multiregion,
# tests/faults), and the few caps a fault test must move to reach (each says which and why).
TUNING_OVERRIDES: Final = (
    E.WORKER_LEASE_SECONDS,
    E.MIRROR_GRACE_SECONDS,
    E.STANDBY_MARGIN_SECONDS,
    E.QUEUE_WAIT_SECONDS,
    E.LOG_LEVEL,
    # tests/faults/test_rapid_reset.py: its figure compares the deployed stream cap with an
    # edge without one, which no template value gives.
    E.MAX_STREAMS_PER_CONNECTION,
    # tests/faults/test_tenant_isolation_worker.py (19.7): a task sized 512 MiB / 256 MiB so
    # a report reaches its slot's cap on one machine (the template's 8 GiB task would not).
    E.WORKER_MEMORY_MIB,
    E.WORKER_DISK_MIB,
    # tests/e2e/test_webhooks.py (`reportgrid-dev --tune`): the day of webhook retries in
    # seconds, so a receiver that never answers reaches the DLQ within the test.
    E.WEBHOOK_RETRY_WINDOW_SECONDS,
    E.WEBHOOK_BACKOFF_BASE_SECONDS,
)
ID_SECRETS_SECRET_NAME: Final = "reportgrid/id-secrets"  # noqa: S105 -- a name
IMAGE_TARGETS: Final = ("edge", "worker")


@dataclass(frozen=True)
class Process:
    """A process to start: its argv and its whole environment (nothing inherited)."""

    argv: list[str]
    env: dict[str, str]


@dataclass
class LocalDeployment:
    """One region's stack of a synthesized assembly, tied to the local resources."""

    assembly: Path  # the synthesized cdk.out
    template: RegionalTemplate
    resolver: Resolver
    endpoint_url: str
    images: dict[str, Path]  # Dockerfile target -> its /app/lib tree
    # Every AWS call judged against the component's role (reportgrid/local/iam).
    enforce_iam: bool = True

    @property
    def region(self) -> str:
        return self.template.region

    def base_environment(self) -> dict[str, str]:
        return {
            E.AWS_ENDPOINT_URL: self.endpoint_url,
            "AWS_ACCESS_KEY_ID": LOCAL_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": LOCAL_CREDENTIALS["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            # The local region listens on loopback only (its edges are for this machine).
            E.EDGE_HOST: "127.0.0.1",
            E.WEBHOOK_ALLOW_LOOPBACK: "true",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    # -- Fargate -------------------------------------------------------------------------

    def container(self, name: str, overrides: dict[str, str] | None = None) -> Process:
        containers = self.template.containers()
        if name not in containers:
            raise DeploymentError(f"{self.template.stack} runs no container {name!r}")
        spec = containers[name]
        check_overrides(overrides)
        argv = self._container_argv(spec)
        check_variables([n for n, _ in (*spec.environment, *spec.secrets)], f"container {name}")
        env = resolve_all(self.resolver, dict(spec.environment), f"container {name}")
        env |= self._secrets(spec)
        env |= self.base_environment() | (overrides or {})
        env["PYTHONPATH"] = str(self.images[spec.image_target])
        if self.enforce_iam:
            # Under the task role: the enforcer installs the IAM hook, takes the dev stack
            # off the path again (--hide-self) and runs the image's program, argv intact.
            argv = [
                argv[0],
                "-S",
                "-m",
                "reportgrid.local.iam.enforce",
                *self._iam_arguments(),
                "--container",
                name,
                "--hide-self",
                "--",
                *argv[2:],
            ]
            env["PYTHONPATH"] += os.pathsep + str(iam_enforce.SOURCE_ROOT)
        return Process(argv, env)

    def _iam_arguments(self) -> list[str]:
        arguments = ["--template", str(self.assembly), "--region", self.region]
        for key, value in self.physical().items():
            arguments += ["--physical", f"{key}={value}"]
        return arguments

    def physical(self) -> dict[str, str]:
        """The local values the template cannot give (LogicalId for Ref), the same for the
        processes' settings and their IAM evaluation."""
        return dict(self.resolver.physical)

    def _container_argv(self, spec: Container) -> list[str]:
        dockerfile = stages((PROJECT_DIR / "Dockerfile").read_text())
        entry = spec.entry_point
        if entry is None:
            entry = tuple(exec_form(last(dockerfile, spec.image_target, "ENTRYPOINT"), "") or ())
        command = spec.command
        if command is None:
            command = tuple(exec_form(last(dockerfile, spec.image_target, "CMD"), "CMD") or ())
        argv = [*entry, *command]
        if not argv or argv[0] != "python":
            raise DeploymentError(f"{spec.name}: the image has only `python`, not {argv}")
        # The image's python with only its tree: -S drops site-packages (PYTHONPATH stays).
        return [str(image_python()), "-S", *argv[1:]]

    def _secrets(self, spec: Container) -> dict[str, str]:
        """Each secret's value, as the ECS agent injects it at task start."""
        secrets = local_client("secretsmanager", self.region, self.endpoint_url)
        values = {}
        for name, value_from in spec.secrets:
            secret_id = self.resolver.resolve(value_from, f"container {spec.name} secret {name}")
            try:
                values[name] = secrets.get_secret_value(SecretId=secret_id)["SecretString"]
            except ClientError as error:
                raise DeploymentError(
                    f"container {spec.name}: secret {name} ({secret_id}): {error}"
                ) from None
        return values

    # -- Lambda --------------------------------------------------------------------------

    def function(self, handler: str) -> LambdaFunction:
        return self.template.function_by_handler(handler)

    def mapping(self, function: LambdaFunction) -> EventSourceMapping:
        return self.template.mapping_of(function)

    def lambda_host(
        self, function: LambdaFunction, log_dir: Path, overrides: dict[str, str] | None = None
    ) -> LambdaHost:
        """The function's execution environment: the template's environment, resolved, with
        `overrides` (each one of TUNING_OVERRIDES) on top."""
        check_variables(function.environment, function.logical_id)
        check_overrides(overrides, allowed=TUNING_OVERRIDES)
        env = resolve_all(self.resolver, dict(function.environment), function.logical_id)
        env |= self.base_environment() | (overrides or {})
        if self.enforce_iam:
            # Under the execution role: the host's bootstrap installs the hook from this.
            env[IAM_SPEC_VARIABLE] = iam_enforce.spec(
                self.assembly,
                region=self.region,
                function=function.handler,
                physical=self.physical(),
            )
        return LambdaHost(
            function,
            python=runtime_python(function.runtime, find_python),
            environment=env,
            function_arn=f"arn:aws:lambda:{self.region}:{LOCAL_ACCOUNT}:function:"
            f"{function.logical_id}",
            log_file=log_dir / f"{function.service}.log",
            tmp_dir=log_dir / "tmp" / function.logical_id,
        )

    def source_url(self, mapping: EventSourceMapping) -> str:
        """The queue URL (SQS) or stream name (Kinesis) a mapping reads."""
        return self.resolver.resolve({"Ref": mapping.source}, "event source")

    def on_failure_url(self, mapping: EventSourceMapping) -> str | None:
        if mapping.on_failure is None:
            return None
        return self.resolver.resolve({"Ref": mapping.on_failure}, "on-failure destination")


def parse_tuning(pairs: Iterable[str]) -> dict[str, str]:
    """`NAME=VALUE` pairs (`reportgrid-dev --tune`), each one of TUNING_OVERRIDES."""
    tuning: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise DeploymentError(f"--tune {pair!r}: give NAME=VALUE")
        tuning[name] = value
    unexpected = sorted(set(tuning) - set(TUNING_OVERRIDES))
    if unexpected:
        allowed = ", ".join(TUNING_OVERRIDES)
        names = ", ".join(unexpected)
        raise DeploymentError(f"--tune: {names} may not be tuned (one of {allowed})")
    return tuning


def check_overrides(
    overrides: dict[str, str] | None,
    allowed: Iterable[str] = (*LOCAL_OVERRIDES, *TUNING_OVERRIDES),
) -> None:
    """Refuse a setting that is not a listed override: anything else runs as deployed."""
    unexpected = set(overrides or {}) - set(allowed)
    if unexpected:
        raise DeploymentError(f"not a local override: {sorted(unexpected)}")


@functools.cache
def image_python() -> Path:
    """The Python the images run (the Dockerfile's ARG PYTHON_VERSION)."""
    for line in (PROJECT_DIR / "Dockerfile").read_text().splitlines():
        if line.startswith("ARG PYTHON_VERSION="):
            major, minor = line.split("=", 1)[1].split(".")[:2]
            return find_python(int(major), int(minor))
    raise DeploymentError("the Dockerfile pins no ARG PYTHON_VERSION")


# Variables the code reads besides the settings model's: Powertools' and the AWS SDK's own.
FOREIGN_VARIABLES: Final = frozenset(
    {
        E.LOG_LEVEL,
        E.METRICS_NAMESPACE,
        E.SERVICE_NAME,
        E.XRAY_DAEMON_ADDRESS,
        "POWERTOOLS_TRACE_DISABLED",
    }
)


def settings_variables() -> frozenset[str]:
    """Every variable the settings model reads: its fields' aliases, and the variables that
    name a secret holding a field's value instead (the Lambda's *_ARN)."""
    names: set[str] = {arn for _, arn in SECRET_VARIABLES}
    for info in Settings.model_fields.values():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c for c in alias.choices if isinstance(c, str)}
        elif isinstance(alias, str):
            names.add(alias)
    return frozenset(names)


def check_variables(names: Iterable[str], where: str) -> None:
    """A variable the template sets that no code reads is a renamed or misspelt setting:
    the setting it meant falls back to its default (or is missing) in AWS. Refuse to start
    rather than run on that default."""
    known = settings_variables() | FOREIGN_VARIABLES
    unknown = sorted(set(names) - known)
    if unknown:
        hints = [
            f"{name} (did you mean {', '.join(close)}?)"
            if (close := difflib.get_close_matches(name, known, n=2))
            else name
            for name in unknown
        ]
        raise DeploymentError(
            f"{where}: the template sets {', '.join(hints)}, which no setting reads"
        )


def build_images() -> dict[str, Path]:
    """Each image target's /app/lib, built by the command the Dockerfile runs
    (`python cdk/artifacts.py <target> /app/lib`) for this machine's Python (the image's
    version), from the cache when nothing it is made from changed."""
    uv = shutil.which("uv") or str(PROJECT_DIR / ".tools" / "bin" / "uv")
    key = inputs_digest(sys.version)

    def build(directory: Path) -> None:
        for target in IMAGE_TARGETS:
            result = subprocess.run(
                [
                    sys.executable,
                    str(PROJECT_DIR / "cdk" / "artifacts.py"),
                    target,
                    str(directory / target),
                ],
                env={**os.environ, "PATH": f"{Path(uv).parent}{os.pathsep}{os.environ['PATH']}"},
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            if result.returncode != 0:
                raise DeploymentError(f"building the {target} image tree: {result.stderr.strip()}")

    entry = cached("images", key, build)
    return {target: entry / target for target in IMAGE_TARGETS}


def _settings(template: RegionalTemplate) -> list[tuple[str, Any]]:
    """(variable, template value) of every process's environment and secrets."""
    pairs: list[tuple[str, Any]] = []
    for spec in template.containers().values():
        pairs += [*spec.environment, *spec.secrets]
    for function in template.functions().values():
        pairs += list(function.environment.items())
    return pairs


def _referenced(template: RegionalTemplate, value: Any) -> tuple[str, dict[str, Any]] | None:
    if not isinstance(value, dict) or not ({"Ref", "Fn::GetAtt"} & set(value)):
        return None
    target = str(value.get("Ref") or value["Fn::GetAtt"][0])
    resource = template.resources.get(target)
    return (target, resource) if resource is not None else None


def prepare(
    assembly_dir: Path,
    region: str,
    *,
    endpoint_url: str,
    images: dict[str, Path],
    redis_url: str,
    id_secrets: str,
) -> LocalDeployment:
    """Read the region's stack, create the secrets its processes read (under the names the
    template gives them, or `<stack>/<logical id>` where CloudFormation would generate a
    name), and tie the resolver to them (a secret's local ARN has moto's random suffix)."""
    template = Assembly.read(assembly_dir).regional(region)
    # What each secret a process reads holds, by the variable that names it.
    contents = {
        E.REDIS_URL: redis_url,
        E.REDIS_URL_ARN: redis_url,
        E.ID_SECRETS: id_secrets,
        E.ID_SECRETS_ARN: id_secrets,
        E.WEBHOOK_SECRET_ARN: local_webhook_secret(id_secrets),
    }
    referenced: dict[str, str] = {}  # logical id -> local secret name
    # The webhook root lives in the data stack (replicated); a regional stack names it, so
    # no Secret resource of this template says to create it.
    values = {
        ID_SECRETS_SECRET_NAME: id_secrets,
        resources.WEBHOOK_SECRET_NAME: local_webhook_secret(id_secrets),
    }
    for variable, value in _settings(template):
        found = _referenced(template, value)
        if found is None or found[1]["Type"] != "AWS::SecretsManager::Secret":
            continue
        logical_id, resource = found
        if variable not in contents:
            raise DeploymentError(f"{variable}: no local value for secret {logical_id}")
        name = str(resource.get("Properties", {}).get("Name") or f"{template.stack}/{logical_id}")
        referenced[logical_id] = name
        values[name] = contents[variable]
    secrets = local_client("secretsmanager", region, endpoint_url)
    for name, value in values.items():
        _put_secret(secrets, name, value)
    physical = {
        logical_id: str(secrets.describe_secret(SecretId=name)["ARN"])
        for logical_id, name in referenced.items()
    }
    resolver = Resolver(template, physical=physical)
    return LocalDeployment(assembly_dir, template, resolver, endpoint_url, images)


def local_webhook_secret(id_secrets: str) -> str:
    """The local region's webhook root secret: derived from its id secret, so a test knows
    it (and each tenant's signing secret) without another setting."""
    return hashlib.sha256(b"reportgrid local webhook root\0" + id_secrets.encode()).hexdigest()


def _put_secret(secrets: Any, name: str, value: str) -> None:
    try:
        secrets.create_secret(Name=name, SecretString=value)
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceExistsException":
            raise
        secrets.put_secret_value(SecretId=name, SecretString=value)


def local_python() -> str:
    """The dev stack's own interpreter (the event sources and the supervisor run on it)."""
    return sys.executable
