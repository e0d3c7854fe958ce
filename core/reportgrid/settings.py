"""One typed settings model, read from the environment once per process.

The variable names come from `reportgrid.resources.ENV`, the same module the CDK uses to set
them. A missing or invalid value stops the process at start-up with a message that names the
variable and says what is wrong, never later in the middle of a request.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Annotated, Final, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from reportgrid import ids, limits, resources
from reportgrid.errors import SettingsError

E = resources.ENV


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    """Everything a Reportgrid process may need. Each process reads the fields it uses."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=False)

    region: str = Field(validation_alias=_env(E.REGION))
    peer_region: str | None = Field(default=None, validation_alias=_env(E.PEER_REGION))
    table_name: str = Field(default=resources.TABLE_NAME, validation_alias=_env(E.TABLE_NAME))
    arbiter_table_name: str | None = Field(
        default=None, min_length=1, validation_alias=_env(E.ARBITER_TABLE_NAME)
    )
    task_stream_name: str = Field(
        default=resources.TASK_STREAM_NAME, validation_alias=_env(E.TASK_STREAM_NAME)
    )
    heavy_queue_url: str | None = Field(default=None, validation_alias=_env(E.HEAVY_QUEUE_URL))
    standby_queue_url: str | None = Field(default=None, validation_alias=_env(E.STANDBY_QUEUE_URL))
    stream_failure_queue_url: str | None = Field(
        default=None, validation_alias=_env(E.STREAM_FAILURE_QUEUE_URL)
    )
    peer_standby_queue_url: str | None = Field(
        default=None, validation_alias=_env(E.PEER_STANDBY_QUEUE_URL)
    )
    results_bucket: str | None = Field(default=None, validation_alias=_env(E.RESULTS_BUCKET))
    event_bus_name: str = Field(
        default=resources.EVENT_BUS_NAME, min_length=1, validation_alias=_env(E.EVENT_BUS_NAME)
    )
    input_buckets: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validation_alias=_env(E.INPUT_BUCKETS)
    )
    input_reader_role_arn: str | None = Field(
        default=None, validation_alias=_env(E.INPUT_READER_ROLE_ARN)
    )
    replica_results_bucket: str | None = Field(
        default=None, validation_alias=_env(E.REPLICA_RESULTS_BUCKET)
    )
    redis_url: str | None = Field(default=None, validation_alias=_env(E.REDIS_URL))
    id_secrets: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        validation_alias=_env(E.ID_SECRETS)
    )
    aws_endpoint_url: str | None = Field(default=None, validation_alias=_env(E.AWS_ENDPOINT_URL))
    edge_port: int = Field(
        default=resources.EDGE_PORT, ge=0, le=65535, validation_alias=_env(E.EDGE_PORT)
    )
    # Every interface in a Fargate task (the ALB reaches it on the task's ENI); the local
    # region binds loopback only.
    edge_host: str = Field(default="[::]", min_length=1, validation_alias=_env(E.EDGE_HOST))
    edge_workers: int = Field(
        default_factory=lambda: len(os.sched_getaffinity(0)) or 1,
        ge=1,
        le=256,
        validation_alias=_env(E.EDGE_WORKERS),
    )
    max_concurrent_rpcs: int = Field(
        default=2000, ge=1, validation_alias=_env(E.MAX_CONCURRENT_RPCS)
    )
    drain_grace_seconds: float = Field(
        default=resources.EDGE_DRAIN_GRACE_SECONDS,
        gt=0,
        lt=resources.ALB_DEREGISTRATION_DELAY_SECONDS,
        validation_alias=_env(E.DRAIN_GRACE_SECONDS),
    )
    tenant_rate_limit: float = Field(
        default=5000.0, gt=0, validation_alias=_env(E.TENANT_RATE_LIMIT)
    )
    # The edge's call and stream limits; the defaults live in reportgrid/resources.py.
    call_budget_seconds: float = Field(
        default=resources.EDGE_CALL_BUDGET_SECONDS,
        gt=0,
        le=300,
        validation_alias=_env(E.CALL_BUDGET_SECONDS),
    )
    max_watch_seconds: float = Field(
        default=resources.EDGE_MAX_WATCH_SECONDS,
        gt=0,
        le=24 * 3600,
        validation_alias=_env(E.MAX_WATCH_SECONDS),
    )
    watch_heartbeat_seconds: float = Field(
        default=resources.EDGE_WATCH_HEARTBEAT_SECONDS,
        gt=0,
        # Must arrive before Global Accelerator drops the quiet connection.
        lt=resources.GA_TCP_IDLE_TIMEOUT_SECONDS,
        validation_alias=_env(E.WATCH_HEARTBEAT_SECONDS),
    )
    download_uri_seconds: int = Field(
        default=resources.EDGE_DOWNLOAD_URI_SECONDS,
        ge=1,
        le=resources.EDGE_MAX_DOWNLOAD_URI_SECONDS,
        validation_alias=_env(E.DOWNLOAD_URI_SECONDS),
    )
    max_concurrent_watches: int = Field(
        default=resources.EDGE_MAX_CONCURRENT_WATCHES,
        ge=1,
        validation_alias=_env(E.MAX_CONCURRENT_WATCHES),
    )
    tenant_max_concurrent_rpcs: int = Field(
        default=resources.EDGE_TENANT_MAX_CONCURRENT_RPCS,
        ge=1,
        validation_alias=_env(E.TENANT_MAX_CONCURRENT_RPCS),
    )
    tenant_max_concurrent_watches: int = Field(
        default=resources.EDGE_TENANT_MAX_CONCURRENT_WATCHES,
        ge=1,
        validation_alias=_env(E.TENANT_MAX_CONCURRENT_WATCHES),
    )
    max_streams_per_connection: int = Field(
        default=resources.EDGE_MAX_STREAMS_PER_CONNECTION,
        ge=1,
        validation_alias=_env(E.MAX_STREAMS_PER_CONNECTION),
    )
    min_client_ping_interval_ms: int = Field(
        default=resources.EDGE_MIN_CLIENT_PING_INTERVAL_MS,
        ge=100,
        # Never above the SDK's keepalive, or every SDK channel would collect strikes.
        le=resources.CLIENT_KEEPALIVE_SECONDS * 1000,
        validation_alias=_env(E.MIN_CLIENT_PING_INTERVAL_MS),
    )
    edge_producer: Literal["batching", "naive"] = Field(
        default="batching", validation_alias=_env(E.EDGE_PRODUCER)
    )
    worker_concurrency: int = Field(
        default=2, ge=1, le=64, validation_alias=_env(E.WORKER_CONCURRENCY)
    )
    # A tenant without a tenant item may have this many reports running at once in the
    # region (workers/functions/tenant_slots.py); the CDK derives it from the fleet's size.
    default_max_running: int = Field(
        default=limits.DEFAULT_MAX_RUNNING, ge=1, validation_alias=_env(E.DEFAULT_MAX_RUNNING)
    )
    worker_memory_mib: int | None = Field(
        default=None, ge=128, le=1024 * 1024, validation_alias=_env(E.WORKER_MEMORY_MIB)
    )
    worker_vcpus: int | None = Field(
        default=None, ge=1, le=192, validation_alias=_env(E.WORKER_VCPUS)
    )
    worker_disk_mib: int | None = Field(
        default=None, ge=64, le=1024 * 1024, validation_alias=_env(E.WORKER_DISK_MIB)
    )
    worker_lease_seconds: float = Field(
        default=resources.WORKER_LEASE_SECONDS,
        ge=1,
        le=resources.HEAVY_WORKER_TIMEOUT_SECONDS,
        validation_alias=_env(E.WORKER_LEASE_SECONDS),
    )
    queue_wait_seconds: int = Field(
        default=20, ge=0, le=20, validation_alias=_env(E.QUEUE_WAIT_SECONDS)
    )
    mirror_grace_seconds: int = Field(
        default=resources.MIRROR_GRACE_SECONDS,
        ge=0,
        le=resources.MAX_SQS_DELAY_SECONDS,
        validation_alias=_env(E.MIRROR_GRACE_SECONDS),
    )
    standby_margin_seconds: float = Field(
        default=resources.STANDBY_MARGIN_SECONDS,
        ge=0,
        le=600,
        validation_alias=_env(E.STANDBY_MARGIN_SECONDS),
    )
    webhook_queue_url: str | None = Field(default=None, validation_alias=_env(E.WEBHOOK_QUEUE_URL))
    webhook_dlq_url: str | None = Field(default=None, validation_alias=_env(E.WEBHOOK_DLQ_URL))
    webhook_secret: SecretStr | None = Field(default=None, validation_alias=_env(E.WEBHOOK_SECRET))
    webhook_retry_window_seconds: float = Field(
        default=resources.WEBHOOK_RETRY_WINDOW_SECONDS,
        gt=0,
        le=13 * 86400,  # SQS keeps a message at most 14 days
        validation_alias=_env(E.WEBHOOK_RETRY_WINDOW_SECONDS),
    )
    webhook_backoff_base_seconds: float = Field(
        default=resources.WEBHOOK_BACKOFF_BASE_SECONDS,
        gt=0,
        le=resources.MAX_SQS_DELAY_SECONDS,
        validation_alias=_env(E.WEBHOOK_BACKOFF_BASE_SECONDS),
    )
    webhook_allow_loopback: bool = Field(
        default=False, validation_alias=_env(E.WEBHOOK_ALLOW_LOOPBACK)
    )

    @field_validator("region", "peer_region")
    @classmethod
    def _known_region(cls, value: str | None) -> str | None:
        if value is not None:
            ids.region_code(value)  # raises ValueError naming the region
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _strong_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("input_buckets", mode="before")
    @classmethod
    def _split_buckets(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("id_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("id_secrets")
    @classmethod
    def _strong_secrets(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        if not value:
            raise ValueError("give at least one secret")
        if any(len(s.get_secret_value()) < 16 for s in value):
            raise ValueError("each secret must be at least 16 characters")
        return value

    def id_codec(self) -> ids.IdCodec:
        return ids.IdCodec([s.get_secret_value().encode() for s in self.id_secrets])


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; raise SettingsError naming every bad variable."""
    source = os.environ if environ is None else environ
    # Only our own variables are read; pass them explicitly so a test's mapping is the
    # whole environment.
    names = {getattr(E, f) for f in E.__dataclass_fields__}
    values = {k: v for k, v in source.items() if k in names}
    values.update(_resolve_secret_arns(values))
    try:
        return Settings.model_validate(values)
    except ValidationError as err:
        problems = []
        for issue in err.errors():
            # Fields are aliased to their variables, so the location is the variable name.
            variable = str(issue["loc"][0]) if issue["loc"] else "environment"
            detail = issue["msg"].removeprefix("Value error, ")
            if issue["type"] == "missing":
                detail = "is required but not set"
            problems.append(f"{variable}: {detail}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


# A value that may come as a Secrets Manager ARN instead (the Lambda gets ARNs; ECS injects
# the values itself).
SECRET_VARIABLES: Final = (
    (E.ID_SECRETS, E.ID_SECRETS_ARN),
    (E.REDIS_URL, E.REDIS_URL_ARN),
    (E.WEBHOOK_SECRET, E.WEBHOOK_SECRET_ARN),
)


def _resolve_secret_arns(values: Mapping[str, str]) -> dict[str, str]:
    """Fetch each value that is given only by its secret's ARN, once, at start-up."""
    resolved: dict[str, str] = {}
    for variable, arn_variable in SECRET_VARIABLES:
        arn = values.get(arn_variable)
        if variable in values or not arn:
            continue
        parts = arn.split(":")
        if len(parts) < 7 or parts[2] != "secretsmanager":
            raise SettingsError(f"{arn_variable}: {arn!r} is not a Secrets Manager secret ARN")
        import boto3  # noqa: PLC0415 -- only processes configured by ARN pay for it
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        client = boto3.client(
            "secretsmanager",
            region_name=parts[3],
            endpoint_url=values.get(E.AWS_ENDPOINT_URL) or None,
        )
        try:
            resolved[variable] = client.get_secret_value(SecretId=arn)["SecretString"]
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "error")
            raise SettingsError(f"{arn_variable}: cannot read the secret ({code})") from None
        except BotoCoreError as err:
            raise SettingsError(f"{arn_variable}: cannot reach Secrets Manager ({err})") from None
    return resolved


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read on first use."""
    return load_settings()
