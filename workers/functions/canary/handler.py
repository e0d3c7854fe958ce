"""Lambda handler of the synthetic canary (an EventBridge schedule invokes it every minute).

Each run is one probe (functions/canary/probe.py) and always ends in the metrics: one
CanarySuccess (1 or 0) and, when it worked, its CanaryLatency. A failure of any kind (the
endpoint down, a rejected key, a report that failed or came back wrong, settings that do
not validate, the key's secret unreadable) is logged as one line naming where and why,
never raised: a raise would only add a traceback, a Lambda error and the schedule's retry
(a late probe measures nothing).

The API key comes from Secrets Manager once per execution environment, as does the client
(its channel is reused between runs). A rejected key drops both, so a rotated key is read
again on the next run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from functions.canary.probe import ProbeResult, run_probe
from functions.canary.settings import CanarySettings, load_settings
from reportgrid.client import ReportClient
from reportgrid.errors import ReportgridError, SettingsError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

# Names the stack's alarm and dashboard read (cdk/constructs/canary_function.py; a test
# checks both).
SERVICE: Final = "reportgrid-canary"
NAMESPACE: Final = "Reportgrid"  # reportgrid.resources.METRICS_NAMESPACE
SUCCESS: Final = "CanarySuccess"
LATENCY: Final = "CanaryLatency"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
_SECRETS_CONFIG: Final = Config(
    connect_timeout=3, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}
)


@dataclass
class Dependencies:
    settings: CanarySettings
    client: ReportClient


_dependencies: Dependencies | None = None


def configure(dependencies: Dependencies | None) -> None:
    """Inject the dependencies (tests); None resets, so the next run builds them again."""
    global _dependencies  # noqa: PLW0603 - one client per Lambda execution environment
    if _dependencies is not None and _dependencies is not dependencies:
        _dependencies.client.close()
    _dependencies = dependencies


def read_api_key(arn: str, *, secrets: SecretsManagerClient | None = None) -> str:
    """The canary tenant's key (cdk/canary_key.py puts it there)."""
    secrets = secrets or boto3.client("secretsmanager", config=_SECRETS_CONFIG)
    try:
        value = secrets.get_secret_value(SecretId=arn)["SecretString"]
    except (BotoCoreError, ClientError) as err:
        raise SettingsError(f"the canary's API key ({arn}) is unreadable: {err}") from None
    key = value.strip()
    if not key.startswith("rg_"):
        # The secret as the stack created it: no key was provisioned yet.
        raise SettingsError(f"{arn} holds no API key yet (see docs/CONTINUOUS_DEPLOYMENT.md)")
    return key


def client_for(settings: CanarySettings, api_key: str) -> ReportClient:
    options: list[tuple[str, Any]] = []
    if settings.tls and settings.tls_name:
        # Connect to the region's listener, verify its certificate as the service's name.
        options.append(("grpc.ssl_target_name_override", settings.tls_name))
    return ReportClient(settings.endpoint, api_key=api_key, tls=settings.tls, options=options)


def dependencies() -> Dependencies:
    global _dependencies  # noqa: PLW0603
    if _dependencies is None:
        settings = load_settings()
        _dependencies = Dependencies(
            settings, client_for(settings, read_api_key(settings.api_key_secret_arn))
        )
    return _dependencies


def probe_once() -> ProbeResult:
    started = time.monotonic()
    try:
        deps = dependencies()
    except ReportgridError as err:  # SettingsError, or a client that cannot be built
        elapsed_ms = round((time.monotonic() - started) * 1000.0, 1)
        return ProbeResult(False, "configure", str(err), elapsed_ms)
    settings = deps.settings
    result = run_probe(
        deps.client,
        home_region=settings.region,
        deadline_seconds=settings.deadline_seconds,
        seed=int(time.time()) % 100_000,
    )
    if result.reason.startswith("Unauthenticated"):
        configure(None)  # a rotated or revoked key: read the secret again next time
    return result


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        result = probe_once()
    except Exception as err:  # a bug of ours: still a data point, and logged
        logger.exception("canary probe crashed")
        result = ProbeResult(False, "probe", f"{type(err).__name__}: {err}", 0.0)
    metrics.add_metric(SUCCESS, MetricUnit.Count, 1 if result.ok else 0)
    if result.ok:
        metrics.add_metric(LATENCY, MetricUnit.Milliseconds, result.latency_ms)
        logger.info("canary succeeded", extra=result.as_dict())
    else:
        logger.error("canary failed", extra=result.as_dict())
    return result.as_dict()
