"""Lambda handler for the webhook queue (resources.WEBHOOK_QUEUE_NAME), fed by the bus's
rule with every terminal completion event and by its own retries (delivery.py).

Each message succeeds or fails alone (Powertools BatchProcessor, failures reported by id):
- the URL is the event's notify_url, else the tenant's default webhook (its tenant item,
  cached for TENANT_CACHE_SECONDS); neither: nothing to do;
- the body is signed with the tenant's current signing secret, and during a rotation's
  overlap with the previous one too (reportgrid.webhooks.sign), and POSTed through
  safe_http;
- 2xx: delivered (WebhooksDelivered). Anything else: a retry is sent to the queue with a
  backoff delay and the message succeeds (WebhookAttemptsFailed); once the retry window
  since the first attempt has passed, or the URL itself is refused, the delivery goes to
  the DLQ instead (WebhooksGivenUp, an alarm) and the message succeeds;
- only our own trouble (SQS or DynamoDB unreachable) fails the message, so that it comes
  back; a message that cannot be parsed fails every time and SQS moves it to the DLQ.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from functions.batch import Wired, sqs_batch_handler
from functions.clients import client
from functions.webhooks import delivery, safe_http
from reportgrid import resources, tenants
from reportgrid.errors import SettingsError
from reportgrid.settings import Settings, get_settings
from reportgrid.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, sign

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs.client import SQSClient

SERVICE: Final = resources.SERVICE_WEBHOOKS
# How long a tenant's webhook settings are used before they are read again: an operator's
# change (default URL, rotation) applies within this long.
TENANT_CACHE_SECONDS: Final = 60.0

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=resources.METRICS_NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class TenantWebhooks:
    """Tenants' webhook settings, read from their items (GetItem) and cached."""

    ddb: DynamoDBClient
    table_name: str
    ttl_seconds: float = TENANT_CACHE_SECONDS
    _cache: dict[str, tuple[float, tenants.Webhooks]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, tenant: str) -> tenants.Webhooks:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(tenant)
        if cached is not None and now - cached[0] < self.ttl_seconds:
            return cached[1]
        item = self.ddb.get_item(TableName=self.table_name, Key=tenants.item_key(tenant)).get(
            "Item"
        )
        # A tenant without an item (keys made before tenants existed): no default URL,
        # secret version 1.
        found = tenants.webhooks_from_item(item) if item else tenants.NO_WEBHOOKS
        with self._lock:
            self._cache[tenant] = (now, found)
        return found


@dataclass
class Dependencies:
    sqs: SQSClient
    tenant_webhooks: TenantWebhooks
    queue_url: str
    dlq_url: str
    root_secret: bytes
    retry_window_seconds: float
    backoff_base_seconds: float
    allow_loopback: bool = False
    limits: safe_http.Limits = field(default_factory=safe_http.Limits)
    resolve: safe_http.Resolver | None = None  # tests only: where names resolve

    @classmethod
    def from_settings(cls, settings: Settings) -> Dependencies:
        missing = [
            name
            for name, value in (
                (resources.ENV.WEBHOOK_QUEUE_URL, settings.webhook_queue_url),
                (resources.ENV.WEBHOOK_DLQ_URL, settings.webhook_dlq_url),
                (resources.ENV.WEBHOOK_SECRET_ARN, settings.webhook_secret),
            )
            if not value
        ]
        if missing or settings.webhook_secret is None:
            raise SettingsError(f"the webhook function needs {', '.join(missing)}")
        return cls(
            sqs=client("sqs", settings),
            tenant_webhooks=TenantWebhooks(client("dynamodb", settings), settings.table_name),
            queue_url=str(settings.webhook_queue_url),
            dlq_url=str(settings.webhook_dlq_url),
            root_secret=settings.webhook_secret.get_secret_value().encode(),
            retry_window_seconds=settings.webhook_retry_window_seconds,
            backoff_base_seconds=settings.webhook_backoff_base_seconds,
            allow_loopback=settings.webhook_allow_loopback,
        )


dependencies = Wired(lambda: Dependencies.from_settings(get_settings()))
configure = dependencies.configure


def deliver_once(item: delivery.Delivery, url: str, deps: Dependencies) -> safe_http.Outcome:
    """One signed POST of the event to `url`."""
    body = delivery.payload(item)
    webhooks = deps.tenant_webhooks.get(item.tenant)
    secrets = webhooks.signing_secrets(deps.root_secret, item.tenant, _now_ms())
    headers = {
        SIGNATURE_HEADER: sign(body, secrets, int(time.time())),
        EVENT_ID_HEADER: item.event_id,
    }
    extra: dict[str, Any] = {"resolve": deps.resolve} if deps.resolve is not None else {}
    return safe_http.post(
        url, body, headers, allow_loopback=deps.allow_loopback, limits=deps.limits, **extra
    )


def record_handler(record: SQSRecord) -> str:
    deps = dependencies()
    item = delivery.parse_message(record.body)
    url = item.url or item.detail.get("notify_url") or deps.tenant_webhooks.get(item.tenant).url
    context = {
        "event_id": item.event_id,
        "report_id": item.detail.get("report_id"),
        "tenant": item.tenant,
        "home_region": item.detail.get("home_region"),
        # reportgrid/events.py: in the detail when the report item holds it
        "trace_id": item.detail.get("trace_id") or "",
        "attempt": item.attempt + 1,
    }
    if not url:
        return "no webhook"
    now = _now_ms()
    first = item.first_attempt_ms if item.first_attempt_ms is not None else now
    outcome = deliver_once(item, str(url), deps)
    if outcome.delivered:
        metrics.add_metric(resources.METRIC.WEBHOOKS_DELIVERED, MetricUnit.Count, 1)
        logger.info(
            "webhook delivered",
            extra={**context, "event": "webhook_delivered", "status": outcome.status},
        )
        return "delivered"
    metrics.add_metric(resources.METRIC.WEBHOOK_ATTEMPTS_FAILED, MetricUnit.Count, 1)
    finished_ms = _now_ms()
    if not outcome.retriable or delivery.out_of_time(
        first, finished_ms, window_seconds=deps.retry_window_seconds
    ):
        deps.sqs.send_message(
            QueueUrl=deps.dlq_url, MessageBody=item.retry_body(url=url, first_attempt_ms=first)
        )
        metrics.add_metric(resources.METRIC.WEBHOOKS_GIVEN_UP, MetricUnit.Count, 1)
        logger.error(
            "webhook given up",
            extra={
                **context,
                "event": "webhook_given_up",
                "reason": outcome.reason,
                "status": outcome.status,
            },
        )
        return "given up"
    delay = delivery.retry_delay(
        item.attempt + 1,
        base=deps.backoff_base_seconds,
        first_attempt_ms=first,
        now_ms=finished_ms,
        window_seconds=deps.retry_window_seconds,
    )
    deps.sqs.send_message(
        QueueUrl=deps.queue_url,
        MessageBody=item.retry_body(url=url, first_attempt_ms=first),
        DelaySeconds=delay,
    )
    logger.warning(
        "webhook attempt failed; retrying",
        extra={**context, "reason": outcome.reason, "status": outcome.status, "delay_s": delay},
    )
    return "retrying"


handler = sqs_batch_handler(
    record_handler=record_handler,
    processor=processor,
    dependencies=dependencies,
    logger=logger,
    metrics=metrics,
    tracer=tracer,
)
