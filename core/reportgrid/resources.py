"""Every name Reportgrid's resources go by: tables, keys, indexes, streams, queues, buckets,
cache keys and environment variables.

This is the one definition. The CDK constructs (cdk/), the local region (reportgrid/local/)
and the running code all import it, and a test checks that the synthesized template and the
local bootstrap agree with it. Change a name here and everything follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from reportgrid import wire

PROJECT: Final = "reportgrid"

# ---------------------------------------------------------------------------------------
# DynamoDB: one global table holds reports and API keys (single-table design).
# ---------------------------------------------------------------------------------------
TABLE_NAME: Final = "reportgrid-reports"
# Claims and leases, on a multi-Region strongly consistent global table (docs/MULTI_REGION.md).
ARBITER_TABLE_NAME: Final = "reportgrid-leases"
PARTITION_KEY: Final = "pk"  # string; see item keys below
TTL_ATTRIBUTE: Final = "expires_at"  # epoch seconds; DynamoDB deletes the item after it

# Item key prefixes. A report's partition key is REPORT_PREFIX + report id; an API key's is
# API_KEY_PREFIX + the hex SHA-256 of the key (the key itself is never stored).
REPORT_PREFIX: Final = "report#"
API_KEY_PREFIX: Final = "apikey#"

# The tenant index lists a tenant's reports newest first. Its partition key is spread over
# TENANT_INDEX_SHARDS shards per tenant (write sharding), so that one tenant writing
# thousands of reports a second does not make one hot index partition; List merges them.
TENANT_INDEX_NAME: Final = "tenant-created"
TENANT_INDEX_PARTITION_KEY: Final = "tenant_shard"  # "<tenant>#<shard>"
TENANT_INDEX_SORT_KEY: Final = "created_key"  # "<created ms, 13 digits>#<report id>"
TENANT_INDEX_SHARDS: Final = 8


def report_key(report_id: str) -> dict[str, str]:
    """The primary key of a report item."""
    return {PARTITION_KEY: REPORT_PREFIX + report_id}


# A user's intents about a report live in items of their own that only the edge writes and
# no worker ever writes, so last-writer-wins replication can neither drop them nor let them
# overwrite a worker's write (docs/MULTI_REGION.md): a requested cancellation, and the
# tombstone of a deleted report.
CANCEL_PREFIX: Final = "cancel#"
TOMBSTONE_PREFIX: Final = "deleted#"


def cancel_key(report_id: str) -> dict[str, str]:
    """The primary key of a report's cancel-request item."""
    return {PARTITION_KEY: CANCEL_PREFIX + report_id}


def tombstone_key(report_id: str) -> dict[str, str]:
    """The primary key of a deleted report's tombstone item."""
    return {PARTITION_KEY: TOMBSTONE_PREFIX + report_id}


# An idempotency key's claim (grpc_edge/idempotency.py): which report a tenant's key names,
# with the fingerprint of the request that made it, kept IDEMPOTENCY_KEY_HOURS (the TTL
# attribute; a claim past it is replaced even while TTL has not swept it yet). The key
# itself is hashed: it is the client's text, of any allowed character.
IDEMPOTENCY_PREFIX: Final = "idem#"
IDEMPOTENCY_KEY_HOURS: Final = 24


def idempotency_claim_key(tenant: str, key_sha256_hex: str) -> dict[str, str]:
    """The primary key of a tenant's idempotency-key claim ("#" is never in a tenant)."""
    return {PARTITION_KEY: f"{IDEMPOTENCY_PREFIX}{tenant}#{key_sha256_hex}"}


def api_key_key(key_sha256_hex: str) -> dict[str, str]:
    """The primary key of an API key item."""
    return {PARTITION_KEY: API_KEY_PREFIX + key_sha256_hex}


# Operators' items (reportgrid/tenants.py, reportgrid/audit.py): a tenant with its quotas,
# and the audit log (kept AUDIT_RETENTION_DAYS, by the TTL attribute). They are listed
# through the tenant index under partitions no report can use ("!" is never in a tenant
# name): every tenant, one tenant's API keys, one tenant's audit records.
TENANT_PREFIX: Final = "tenant#"
AUDIT_PREFIX: Final = "audit#"
ADMIN_TENANTS_PARTITION: Final = "admin!tenants"
ADMIN_KEYS_PARTITION_PREFIX: Final = "admin!keys!"
ADMIN_AUDIT_PARTITION_PREFIX: Final = "admin!audit!"
AUDIT_RETENTION_DAYS: Final = 400


# Schedules (reportgrid/schedules/items.py, docs/SCHEDULES.md): a schedule item per
# (tenant, schedule), listed through the tenant index under SCHEDULE_LIST_PARTITION_PREFIX +
# tenant; and, while it is active, a due item indexed under one of DUE_SHARDS partitions
# with its next fire as the sort key, so a scheduler run finds every due schedule with
# DUE_SHARDS range queries ("sort key <= now") and catches up without a cursor.
SCHEDULE_PREFIX: Final = "sched#"
DUE_PREFIX: Final = "due#"
SCHEDULE_LIST_PARTITION_PREFIX: Final = "sched!"
DUE_PARTITION_PREFIX: Final = "due!"
DUE_SHARDS: Final = 16
# One counter item per tenant (pk = SCHEDULE_COUNT_PREFIX + tenant, attribute "count"),
# moved in the same transaction as every CreateSchedule and DeleteSchedule, so the cap
# costs one item write instead of counting the tenant's schedules.
SCHEDULE_COUNT_PREFIX: Final = "schedcount#"
MAX_SCHEDULES_PER_TENANT: Final = 1000
# The scheduler (cdk/constructs/scheduler.py): ONE EventBridge Scheduler schedule per region,
# rate(1 minute), in its own group, invoking the scheduler function with the fire minute;
# what Scheduler cannot deliver goes to its DLQ (docs/SCHEDULES.md "Where it runs in AWS").
SCHEDULER_GROUP_NAME: Final = "reportgrid"
SCHEDULER_SCHEDULE_NAME: Final = "reportgrid-fire-due-schedules"
SCHEDULER_DLQ_NAME: Final = "reportgrid-scheduler-dlq"
SCHEDULER_TIMEOUT_SECONDS: Final = 60


def tenant_key(tenant: str) -> dict[str, str]:
    """The primary key of a tenant item."""
    return {PARTITION_KEY: TENANT_PREFIX + tenant}


def tenant_shard(tenant: str, shard: int) -> str:
    return f"{tenant}#{shard}"


def created_key(created_ms: int, report_id: str) -> str:
    # Fixed width so that string order is time order.
    return f"{created_ms:013d}#{report_id}"


# ---------------------------------------------------------------------------------------
# Ingest: the task log (Kinesis) and the queues (SQS). Names are per region.
# ---------------------------------------------------------------------------------------
TASK_STREAM_NAME: Final = "reportgrid-tasks"
HEAVY_QUEUE_NAME: Final = "reportgrid-heavy"
HEAVY_DLQ_NAME: Final = "reportgrid-heavy-dlq"
# Receives tasks mirrored from the peer region (multi-region standby).
STANDBY_QUEUE_NAME: Final = "reportgrid-standby"
STANDBY_DLQ_NAME: Final = "reportgrid-standby-dlq"
# After this many receives a heavy task goes to the DLQ and its report ends FAILED.
HEAVY_MAX_RECEIVES: Final = 5

# ---------------------------------------------------------------------------------------
# EventBridge: completion events (reportgrid/events.py holds the schema; docs/EVENTS.md).
# One bus per region; the events function publishes each terminal state once, in the region
# whose worker wrote it.
# ---------------------------------------------------------------------------------------
EVENT_BUS_NAME: Final = "reportgrid-events"
EVENT_SOURCE: Final = "reportgrid"
# The table-stream event source's on-failure destination: the metadata (shard, sequence
# range) of stream batches the events function gave up on (docs/RUNBOOK.md).
EVENTS_FAILURE_QUEUE_NAME: Final = "reportgrid-events-failed"

# ---------------------------------------------------------------------------------------
# Webhooks (docs/USAGE.md "Webhooks"): a rule on the bus puts every terminal event on the
# webhook queue; the delivery function (functions/webhooks) POSTs it, signed, to the
# report's notify URL or its tenant's default, re-queueing itself with a delay until it is
# delivered or WEBHOOK_RETRY_WINDOW_SECONDS have passed, then gives up into the DLQ.
# ---------------------------------------------------------------------------------------
WEBHOOK_RULE_NAME: Final = "reportgrid-webhooks"
WEBHOOK_QUEUE_NAME: Final = "reportgrid-webhooks"
WEBHOOK_DLQ_NAME: Final = "reportgrid-webhooks-dlq"
# The rule takes every terminal event: reportgrid/events.py DETAIL_TYPES (the schema).
# A message the function cannot handle at all (it raises) is received this many times,
# then SQS moves it to the DLQ; the retry schedule itself never relies on receives.
WEBHOOK_MAX_RECEIVES: Final = 5
WEBHOOK_TIMEOUT_SECONDS: Final = 60
# AWS's advice for an SQS event source: the visibility timeout 6x the function's timeout.
WEBHOOK_VISIBILITY_TIMEOUT_SECONDS: Final = 6 * WEBHOOK_TIMEOUT_SECONDS
# Retries: exponential backoff with full jitter (each delay uniform in 0..min(cap,
# base * 2^n)), cap SQS's longest DelaySeconds, for at least a day after the first attempt.
WEBHOOK_RETRY_WINDOW_SECONDS: Final = 25 * 3600
WEBHOOK_BACKOFF_BASE_SECONDS: Final = 30.0
# One delivery attempt: connect within 3 s, all of it within 10 s; at most this much of a
# response is read (and ignored).
WEBHOOK_CONNECT_TIMEOUT_SECONDS: Final = 3.0
WEBHOOK_TOTAL_TIMEOUT_SECONDS: Final = 10.0
WEBHOOK_MAX_RESPONSE_BYTES: Final = 4096
# A notify URL is at most this long (characters).
WEBHOOK_MAX_URL_LENGTH: Final = 2048
# After a rotation the previous signing secret still signs for this long by default.
WEBHOOK_ROTATION_OVERLAP_SECONDS: Final = 24 * 3600
# The deployment's webhook root secret: each tenant's signing secret is derived from it
# (reportgrid/webhook_policy.py), so no signing secret is stored anywhere.
# Not "...-secret": Secrets Manager reads a name ending in a hyphen and six characters as
# one carrying its ARN's random suffix (its docs advise against such names), and so does the
# local region's IAM check.
WEBHOOK_SECRET_NAME: Final = "reportgrid/webhook-signing-root"  # noqa: S105 -- a name

# ---------------------------------------------------------------------------------------
# S3: large results (and nothing else). Bucket names are global, so they carry the
# account and region.
# ---------------------------------------------------------------------------------------
RESULTS_BUCKET_PREFIX: Final = "reportgrid-results"
RESULTS_KEY_PREFIX: Final = "results/"


def results_bucket_name(account: str, region: str) -> str:
    return f"{RESULTS_BUCKET_PREFIX}-{account}-{region}"


def result_object_key(report_id: str) -> str:
    return f"{RESULTS_KEY_PREFIX}{report_id}"


# ---------------------------------------------------------------------------------------
# Redis (ElastiCache): read cache and state-change notifications.
# ---------------------------------------------------------------------------------------
CACHE_REPORT_PREFIX: Final = "rg:report:"  # + report id -> serialized Report
CACHE_EVENTS_PREFIX: Final = "rg:events:"  # + report id -> pub/sub channel for Watch
CACHE_RATE_PREFIX: Final = "rg:rate:"  # + tenant -> its fleet-wide submit bucket (a hash)
# + tenant -> the reports it has running in this region: a sorted set of "<report id>/<run
# owner>" scored by lease expiry (workers/functions/tenant_slots.py).
CACHE_SLOTS_PREFIX: Final = "rg:slots:"


def cache_report_key(report_id: str) -> str:
    return CACHE_REPORT_PREFIX + report_id


def cache_events_channel(report_id: str) -> str:
    return CACHE_EVENTS_PREFIX + report_id


def cache_rate_key(tenant: str) -> str:
    # One key per tenant: a cluster-mode cache keeps each script call on one slot.
    return CACHE_RATE_PREFIX + tenant


def cache_slots_key(tenant: str) -> str:
    # One key per tenant, like the rate bucket: each slot script touches one hash slot.
    return CACHE_SLOTS_PREFIX + tenant


# ---------------------------------------------------------------------------------------
# Environment variables: the settings model reads these and the CDK sets them.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _EnvNames:
    REGION: str = "REPORTGRID_REGION"
    PEER_REGION: str = "REPORTGRID_PEER_REGION"
    TABLE_NAME: str = "REPORTGRID_TABLE_NAME"
    # The lease arbiter's MRSC table (functions/arbiter.py); unset: last-writer-wins path.
    ARBITER_TABLE_NAME: str = "REPORTGRID_ARBITER_TABLE_NAME"
    TASK_STREAM_NAME: str = "REPORTGRID_TASK_STREAM_NAME"
    HEAVY_QUEUE_URL: str = "REPORTGRID_HEAVY_QUEUE_URL"
    STANDBY_QUEUE_URL: str = "REPORTGRID_STANDBY_QUEUE_URL"
    # The Kinesis on-failure destination (only the local event source sends to it itself).
    STREAM_FAILURE_QUEUE_URL: str = "REPORTGRID_STREAM_FAILURE_QUEUE_URL"
    PEER_STANDBY_QUEUE_URL: str = "REPORTGRID_PEER_STANDBY_QUEUE_URL"
    # The region's completion-event bus (EventBridge; functions/events publishes to it).
    EVENT_BUS_NAME: str = "REPORTGRID_EVENT_BUS_NAME"
    RESULTS_BUCKET: str = "REPORTGRID_RESULTS_BUCKET"
    REPLICA_RESULTS_BUCKET: str = "REPORTGRID_REPLICA_RESULTS_BUCKET"
    REDIS_URL: str = "REPORTGRID_REDIS_URL"
    # Comma-separated; the first signs, all verify (rotation without breaking old ids).
    ID_SECRETS: str = "REPORTGRID_ID_SECRETS"
    # The Secrets Manager secret that holds ID_SECRETS in AWS (resolved at start-up).
    ID_SECRETS_ARN: str = "REPORTGRID_ID_SECRETS_ARN"
    # The Secrets Manager secret that holds REDIS_URL (with its password) in AWS; a process
    # that has no REDIS_URL resolves it at start-up (the Lambda; ECS injects REDIS_URL).
    REDIS_URL_ARN: str = "REPORTGRID_REDIS_URL_ARN"
    AWS_ENDPOINT_URL: str = "AWS_ENDPOINT_URL"  # botocore's own; points at moto locally
    EDGE_PORT: str = "REPORTGRID_EDGE_PORT"
    EDGE_HOST: str = "REPORTGRID_EDGE_HOST"
    EDGE_WORKERS: str = "REPORTGRID_EDGE_WORKERS"
    MAX_CONCURRENT_RPCS: str = "REPORTGRID_MAX_CONCURRENT_RPCS"
    DRAIN_GRACE_SECONDS: str = "REPORTGRID_DRAIN_GRACE_SECONDS"
    TENANT_RATE_LIMIT: str = "REPORTGRID_TENANT_RATE_LIMIT"
    # The edge's call and stream limits (defaults below, EDGE_*; docs/SECURITY.md, limits).
    CALL_BUDGET_SECONDS: str = "REPORTGRID_CALL_BUDGET_SECONDS"
    MAX_WATCH_SECONDS: str = "REPORTGRID_MAX_WATCH_SECONDS"
    WATCH_HEARTBEAT_SECONDS: str = "REPORTGRID_WATCH_HEARTBEAT_SECONDS"
    MAX_CONCURRENT_WATCHES: str = "REPORTGRID_MAX_CONCURRENT_WATCHES"
    # How long a presigned result URL (ResultMetadata.download_uri) is valid, seconds.
    DOWNLOAD_URI_SECONDS: str = "REPORTGRID_DOWNLOAD_URI_SECONDS"
    TENANT_MAX_CONCURRENT_RPCS: str = "REPORTGRID_TENANT_MAX_CONCURRENT_RPCS"
    TENANT_MAX_CONCURRENT_WATCHES: str = "REPORTGRID_TENANT_MAX_CONCURRENT_WATCHES"
    MAX_STREAMS_PER_CONNECTION: str = "REPORTGRID_MAX_STREAMS_PER_CONNECTION"
    MIN_CLIENT_PING_INTERVAL_MS: str = "REPORTGRID_MIN_CLIENT_PING_INTERVAL_MS"
    # How the edge sends tasks to Kinesis: "batching" (default) or "naive" (one PutRecords
    # per request; only for the benchmark that shows what batching buys).
    EDGE_PRODUCER: str = "REPORTGRID_EDGE_PRODUCER"
    WORKER_CONCURRENCY: str = "REPORTGRID_WORKER_CONCURRENCY"
    # The running reports a tenant without a tenant item may have at once in a region
    # (workers/functions/tenant_slots.py); the CDK sets it from the fleet's size
    # (cdk/config.py default_max_running).
    DEFAULT_MAX_RUNNING: str = "REPORTGRID_DEFAULT_MAX_RUNNING"
    # The buckets report inputs may come from (comma-separated; context
    # reportgrid:inputBuckets), and the role the workers assume, tagged with the task's
    # tenant, to read them (cdk/constructs/input_reader.py; docs/SECURITY.md).
    INPUT_BUCKETS: str = "REPORTGRID_INPUT_BUCKETS"
    INPUT_READER_ROLE_ARN: str = "REPORTGRID_INPUT_READER_ROLE_ARN"
    # The worker's task (function) size: DuckDB's memory limit and threads per report are
    # derived from them and the concurrency (reportgrid/limits.py). Unset: the machine's.
    WORKER_MEMORY_MIB: str = "REPORTGRID_WORKER_MEMORY_MIB"
    WORKER_VCPUS: str = "REPORTGRID_WORKER_VCPUS"
    # The worker's scratch disk (Lambda /tmp, Fargate ephemeral storage): DuckDB's spill
    # space per report is derived from it (reportgrid/limits.py).
    WORKER_DISK_MIB: str = "REPORTGRID_WORKER_DISK_MIB"
    # The queue worker's lease and visibility step (default WORKER_LEASE_SECONDS; tests
    # shorten it to see a lost worker's task come back quickly).
    WORKER_LEASE_SECONDS: str = "REPORTGRID_WORKER_LEASE_SECONDS"
    # The queue worker's SQS long-poll wait (at most 20 s).
    QUEUE_WAIT_SECONDS: str = "REPORTGRID_QUEUE_WAIT_SECONDS"
    # Multi-region: how long a mirrored task waits in the peer's standby queue before the
    # standby looks at it, and the safety margin (>= 2x the table's replication lag) the
    # standby adds to an expired lease and waits after its claim (docs/MULTI_REGION.md).
    MIRROR_GRACE_SECONDS: str = "REPORTGRID_MIRROR_GRACE_SECONDS"
    STANDBY_MARGIN_SECONDS: str = "REPORTGRID_STANDBY_MARGIN_SECONDS"
    # Webhooks: the queue the delivery function re-queues retries on, and its DLQ; the root
    # secret (its ARN in AWS); the retry window and backoff base (tests shorten them).
    WEBHOOK_QUEUE_URL: str = "REPORTGRID_WEBHOOK_QUEUE_URL"
    WEBHOOK_DLQ_URL: str = "REPORTGRID_WEBHOOK_DLQ_URL"
    WEBHOOK_SECRET: str = "REPORTGRID_WEBHOOK_SECRET"  # noqa: S105 -- a variable name
    WEBHOOK_SECRET_ARN: str = "REPORTGRID_WEBHOOK_SECRET_ARN"  # noqa: S105 -- a name
    WEBHOOK_RETRY_WINDOW_SECONDS: str = "REPORTGRID_WEBHOOK_RETRY_WINDOW_SECONDS"
    WEBHOOK_BACKOFF_BASE_SECONDS: str = "REPORTGRID_WEBHOOK_BACKOFF_BASE_SECONDS"
    # Set by the local region's launch only (never by the template; tests/infra checks):
    # notify URLs may be http://127.0.0.1 / [::1] / localhost, and delivery may connect to
    # loopback, for the local region's own receivers.
    WEBHOOK_ALLOW_LOOPBACK: str = "REPORTGRID_WEBHOOK_ALLOW_LOOPBACK"
    LOG_LEVEL: str = "LOG_LEVEL"  # Powertools' own
    METRICS_NAMESPACE: str = "POWERTOOLS_METRICS_NAMESPACE"  # Powertools' own
    SERVICE_NAME: str = "POWERTOOLS_SERVICE_NAME"  # Powertools' own
    # The X-Ray daemon's address: Lambda sets it, the Fargate task definitions set it to the
    # sidecar ("host:port" or "tcp:host:port udp:host:port"); functions/segments.py reads it.
    XRAY_DAEMON_ADDRESS: str = "AWS_XRAY_DAEMON_ADDRESS"
    # Read by the SDK's users and the `reportgrid` CLI, never by the service.
    CLIENT_ENDPOINT: str = wire.CLIENT_ENDPOINT_ENV
    CLIENT_API_KEY: str = wire.CLIENT_API_KEY_ENV


ENV: Final = _EnvNames()

METRICS_NAMESPACE: Final = "Reportgrid"

# ---------------------------------------------------------------------------------------
# Ports and limits that both the infrastructure and the code must agree on.
# ---------------------------------------------------------------------------------------
EDGE_PORT: Final = wire.EDGE_PORT
# The edge's readiness check for the ALB (grpc_edge/dependency_health.py): answers OK
# while the edge is SERVING, UNAVAILABLE otherwise. The ALB's gRPC health check judges only
# the status code, and grpc.health.v1 says NOT_SERVING with status OK.
EDGE_READINESS_PATH: Final = "/reportgrid.health.v1.Readiness/Check"
# The edge probes its dependencies this often, and health follows them with hysteresis:
# NOT_SERVING after EDGE_HEALTH_FAIL_AFTER failed probes in a row, SERVING again after
# EDGE_HEALTH_RECOVER_AFTER good ones.
EDGE_HEALTH_INTERVAL_SECONDS: Final = 2.0
EDGE_HEALTH_FAIL_AFTER: Final = 3
EDGE_HEALTH_RECOVER_AFTER: Final = 2
# The edge drains for at most this long on SIGTERM; the ALB deregistration delay is set
# above it so no in-flight call is cut.
EDGE_DRAIN_GRACE_SECONDS: Final = 20
ALB_DEREGISTRATION_DELAY_SECONDS: Final = 30
# Global Accelerator closes a TCP flow after 340 s without data, fixed ("idle timeout",
# docs.aws.amazon.com/global-accelerator/latest/dg/introduction-how-it-works.html); the
# ALB's idle timeout is 60 s by default (cdk/constructs/edge_service.py sets 15 min) and
# HTTP/2 PINGs do not reset it (docs.aws.amazon.com/elasticloadbalancing/latest/
# application/edit-load-balancer-attributes.html). Only data keeps a quiet stream open.
GA_TCP_IDLE_TIMEOUT_SECONDS: Final = 340
# The edge's call and stream limits (settings override each; docs/SECURITY.md, limits).
# A call without a client deadline gets this long on its dependencies.
EDGE_CALL_BUDGET_SECONDS: Final = 10.0
# A WatchReport stream ends after this long (UNAVAILABLE, "watch again"); the SDK resumes.
EDGE_MAX_WATCH_SECONDS: Final = 3600.0
# A quiet WatchReport sends a heartbeat this often: well under both idle timeouts above.
EDGE_WATCH_HEARTBEAT_SECONDS: Final = 30.0
# A presigned result URL is valid this long (or less: see grpc_edge/result_links.py). A
# URL is a bearer credential for one object, so it is short, and capped at an hour.
EDGE_DOWNLOAD_URI_SECONDS: Final = 900
EDGE_MAX_DOWNLOAD_URI_SECONDS: Final = 3600
# Concurrent calls (unary and DownloadReport) per process are settings.max_concurrent_rpcs;
# WatchReport streams have their own pool, so idle watches never take call slots.
EDGE_MAX_CONCURRENT_WATCHES: Final = 10_000
# One tenant's share of a process: it exhausts only its own share.
EDGE_TENANT_MAX_CONCURRENT_RPCS: Final = 500
EDGE_TENANT_MAX_CONCURRENT_WATCHES: Final = 1_000
# HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS of each connection (grpc core: unlimited unless
# set); also what grpc core's rapid-reset defences are measured against. Not 100: grpc core
# refuses (REFUSED_STREAM, a client sees UNAVAILABLE) streams over the cap that a client
# opened before it saw the SETTINGS, counting streams still being torn down, so a burst of
# ~60 calls on one new connection already lost some at 100 (tests/faults, 19.4). An ALB
# connection carries many clients' calls.
EDGE_MAX_STREAMS_PER_CONNECTION: Final = 1_000
# The edge answers a client's pings without data at most this often; faster pings are
# strikes and the third gets GOAWAY too_many_pings. The SDK pings every
# CLIENT_KEEPALIVE_SECONDS, well above it.
EDGE_MIN_CLIENT_PING_INTERVAL_MS: Final = 10_000
CLIENT_KEEPALIVE_SECONDS: Final = wire.CLIENT_KEEPALIVE_SECONDS
# A tenant's inputs live under this prefix of an input bucket, and nowhere else
# (docs/SECURITY.md): the edge and the worker check it, and the input reader role's policy
# allows s3:GetObject only on it, with the tenant from the session tag.
INPUT_TENANT_PREFIX: Final = "tenants"
# The session tag (key) carrying the tenant when a worker assumes the input reader role.
INPUT_TENANT_TAG: Final = "tenant"


def tenant_input_prefix(tenant: str) -> str:
    """The one definition of where `tenant`'s inputs live in an input bucket."""
    return f"{INPUT_TENANT_PREFIX}/{tenant}/"


# Kinesis takes at most 1 MiB per record; a task must always fit in one (reportgrid/wire.py;
# tests/unit/test_tasks_and_records.py checks the largest task the edge can build).
MAX_INLINE_INPUT_BYTES: Final = wire.MAX_INLINE_INPUT_BYTES
# Results at most this large (compressed) live in the DynamoDB item; larger go to S3.
MAX_INLINE_RESULT_BYTES: Final = 300 * 1024
# The gRPC receive limit: inline input plus room for the rest of the request.
MAX_RECEIVE_MESSAGE_BYTES: Final = wire.MAX_RECEIVE_MESSAGE_BYTES
# A worker's lease on a RUNNING report; it renews the lease while it works.
WORKER_LEASE_SECONDS: Final = 60
# The heavy worker's longest report; the queue's visibility timeout is 6x this.
HEAVY_WORKER_TIMEOUT_SECONDS: Final = 900
# The queue's own visibility timeout (AWS's advice: 6x the consumer's timeout). The worker
# receives with a short visibility (WORKER_LEASE_SECONDS) and extends it while it works,
# so a lost worker's message comes back after a lease, not after this.
HEAVY_VISIBILITY_TIMEOUT_SECONDS: Final = 6 * HEAVY_WORKER_TIMEOUT_SECONDS
LAMBDA_TIMEOUT_SECONDS: Final = 120
# The stream-failure drain's Lambda timeout; its queue's visibility timeout is 6x it (AWS's
# advice for an SQS event source).
STREAM_FAILURE_TIMEOUT_SECONDS: Final = LAMBDA_TIMEOUT_SECONDS
STREAM_FAILURE_VISIBILITY_TIMEOUT_SECONDS: Final = 6 * STREAM_FAILURE_TIMEOUT_SECONDS
# Multi-region (docs/MULTI_REGION.md). A mirrored task becomes visible in the peer's standby
# queue this long after the home region accepted it (SQS DelaySeconds, at most 900): longer
# than the home region's normal pickup latency plus the table's replication lag.
MIRROR_GRACE_SECONDS: Final = 30
# The standby takes over a RUNNING report only this long after its lease ran out, and after
# its own claim waits this long before running (a competing claim replicates within it):
# at least twice the global table's replication lag (typically ~1 s).
STANDBY_MARGIN_SECONDS: Final = 5.0
MAX_SQS_DELAY_SECONDS: Final = 900
# Each region's standby worker writes a heartbeat item (key region_heartbeat_key) this
# often. A peer whose heartbeat is older than REGION_STALE_BEATS beats plus the margin is
# presumed lost: only then does the standby take its reports that no run has started, so
# a backlogged but healthy region is never raced for its own reports (docs/MULTI_REGION.md).
REGION_HEARTBEAT_SECONDS: Final = 1.0
REGION_STALE_BEATS: Final = 3
REGION_PREFIX: Final = "region#"


def region_heartbeat_key(region: str) -> dict[str, str]:
    """The primary key of a region's heartbeat item (in the global table)."""
    return {PARTITION_KEY: REGION_PREFIX + region}


# Kinesis keeps tasks this long; an id with no record older than this is NOT_FOUND
# (grpc_edge/reads.py view_missing).
TASK_RETENTION_HOURS: Final = 24

# ---------------------------------------------------------------------------------------
# Deployment names the CDK app and operations share.
# ---------------------------------------------------------------------------------------
# The id-signing secrets (value: ENV.ID_SECRETS's comma-separated list), replicated to every
# region under this name.
ID_SECRETS_SECRET_NAME: Final = "reportgrid/id-secrets"  # noqa: S105 -- a name, not a secret
# Where the Kinesis event source sends the metadata of batches it gave up on. The drain
# (functions/stream_failures) consumes it and re-drives those tasks to the heavy queue; a
# message it still cannot handle after STREAM_FAILURE_MAX_RECEIVES receives goes to the DLQ.
STREAM_FAILURE_QUEUE_NAME: Final = "reportgrid-tasks-failed"
STREAM_FAILURE_DLQ_NAME: Final = "reportgrid-tasks-failed-dlq"
STREAM_FAILURE_MAX_RECEIVES: Final = 5

# Powertools service names (ENV.SERVICE_NAME): the `service` dimension of every metric.
SERVICE_EDGE: Final = "reportgrid-edge"
SERVICE_STREAM_WORKER: Final = "reportgrid-stream-worker"
SERVICE_QUEUE_WORKER: Final = "reportgrid-queue-worker"
SERVICE_STREAM_FAILURES: Final = "reportgrid-stream-failures"
SERVICE_MIRROR: Final = "reportgrid-mirror"
SERVICE_EVENTS: Final = "reportgrid-events"
SERVICE_WEBHOOKS: Final = "reportgrid-webhooks"
SERVICE_SCHEDULER: Final = "reportgrid-scheduler"
METRIC_SERVICE_DIMENSION: Final = "service"


@dataclass(frozen=True)
class _MetricNames:
    """Custom metrics in METRICS_NAMESPACE with the single dimension {service: SERVICE_*}.
    The dashboards and alarms read exactly these; emit them with that dimension set."""

    REQUESTS: str = "Requests"  # edge: Count, one per RPC handled
    REQUEST_LATENCY: str = "RequestLatency"  # edge: Milliseconds per RPC
    REQUEST_FAULTS: str = "RequestFaults"  # edge: Count of RPCs ending INTERNAL/UNAVAILABLE/...
    SHED_REQUESTS: str = "ShedRequests"  # edge: Count rejected by load shedding
    BATCH_SIZE: str = "BatchSize"  # edge: Count of records per Kinesis PutRecords
    CACHE_HITS: str = "CacheHits"  # edge: Count of reads answered by the LRU or Redis
    CACHE_MISSES: str = "CacheMisses"  # edge: Count of reads that went to DynamoDB
    REPORTS_COMPLETED: str = "ReportsCompleted"  # workers: Count
    REPORTS_FAILED: str = "ReportsFailed"  # workers: Count
    REPORT_DURATION: str = "ReportDuration"  # workers: Milliseconds per report
    POISON_RECORDS: str = "PoisonRecords"  # workers, drain: Count of undecodable task records
    # The stream-failure drain: tasks of given-up batches sent to the heavy queue, and
    # records of such batches no longer in the stream (past its retention: lost reports).
    TASKS_REDRIVEN: str = "TasksRedriven"
    STREAM_RECORDS_EXPIRED: str = "StreamRecordsExpired"
    # Stream worker (light path): Milliseconds from the task's accept_time to the terminal
    # write, one value per report it ended; the time-to-terminal SLO (cdk/slo.py) reads it.
    TIME_TO_TERMINAL: str = "TimeToTerminal"
    # Per-tenant fairness (workers/functions/tenant_slots.py): tasks put off because their
    # tenant had max_running reports running (Count; with the dimension TENANT_CLASS as
    # well), how long a put-off task waited for its slot from acceptance (Milliseconds),
    # and slot checks that found the cache down and let the task run uncapped (Count).
    TASKS_DEFERRED: str = "TasksDeferred"
    SLOT_WAIT: str = "TenantSlotWait"
    SLOTS_FAIL_OPEN: str = "TenantSlotsFailOpen"
    # Webhooks: deliveries answered 2xx, failed attempts (re-queued), and events given up
    # on after the retry window (now in the webhook DLQ).
    WEBHOOKS_DELIVERED: str = "WebhooksDelivered"
    WEBHOOK_ATTEMPTS_FAILED: str = "WebhookAttemptsFailed"
    WEBHOOKS_GIVEN_UP: str = "WebhooksGivenUp"
    # The scheduler (functions/scheduler, service SERVICE_SCHEDULER): seconds from a fire's
    # minute to its submit (Maximum per run), and fires that could not be submitted (Count).
    # The scheduler's alarms read these (cdk/constructs/scheduler.py).
    SCHEDULE_FIRE_LAG: str = "FireLagSeconds"
    SCHEDULE_FIRES_FAILED: str = "Failed"


METRIC: Final = _MetricNames()
# TASKS_DEFERRED's second dimension: "quota" (the tenant has a tenant item, its own
# max_running) or "default" (REPORTGRID_DEFAULT_MAX_RUNNING).
METRIC_TENANT_CLASS_DIMENSION: Final = "tenant_class"
TENANT_CLASSES: Final = ("quota", "default")
# The gRPC statuses that are the service's failure, not the caller's: what RequestFaults
# counts, and the bad events of the availability SLOs (cdk/slo.py).
REQUEST_FAULT_CODES: Final = frozenset({"INTERNAL", "UNAVAILABLE", "UNKNOWN", "DATA_LOSS"})
