"""Every limit a report is held to, in one place: what is checked at submit (the kinds'
schemas) and what the workers enforce while a report runs. docs/SECURITY.md lists each
with its value and where it is enforced.
"""

from __future__ import annotations

from typing import Final

from reportgrid import resources, wire

# ---------------------------------------------------------------------------------------
# Run time: enforced by the workers while a report runs (functions/runner.py computes a
# report's budget; reportgrid/engine/session.py enforces it in DuckDB).
# ---------------------------------------------------------------------------------------
# The longest a report may run, per path. Light reports run in the stream-worker Lambda:
# the limit leaves time within its timeout to store the result and write the end state.
LIGHT_RUN_SECONDS: Final = 90
# Heavy reports run on the Fargate queue workers, within their longest report.
HEAVY_RUN_SECONDS: Final = resources.HEAVY_WORKER_TIMEOUT_SECONDS - 60
# How often a running report looks at its deadline and cancel flag (and interrupts DuckDB).
RUN_CHECK_SECONDS: Final = 0.05

# The largest S3 input object a report may name (checked from its size before download).
MAX_S3_INPUT_BYTES: Final = 1024**3
# An S3 CSV/JSON input's columns, counted from its header (CSV) or its first records'
# keys (JSON) before DuckDB reads it (reportgrid/engine/input_shape.py): 40,000 columns
# otherwise end RESOURCE_LIMIT after a long read. At the template's queue worker size
# 20,000 columns still load (tests/faults: a 16,000-column input fails on its params).
# Inline input has MAX_INLINE_COLUMNS.
MAX_INPUT_COLUMNS: Final = 20_000
# The share of the task's (function's) memory DuckDB may use, split evenly between the
# reports a worker runs at once; the rest is Python, the result bytes and the input.
ENGINE_MEMORY_FRACTION: Final = 0.5
MIN_ENGINE_MEMORY_BYTES: Final = 64 * 1024**2
# DuckDB's spill space per report, in the report's own scratch directory: this share of
# the worker's scratch disk (ENV.WORKER_DISK_MIB), split between its concurrent reports
# (the input, up to MAX_S3_INPUT_BYTES, and the result are written there too).
ENGINE_DISK_FRACTION: Final = 0.25
# Without ENV.WORKER_DISK_MIB: the Lambda's 512 MB of /tmp, and Fargate's 20 GiB default
# ephemeral storage for two reports, each times the fraction.
LIGHT_TEMP_DIRECTORY_BYTES: Final = 128 * 1024**2
HEAVY_TEMP_DIRECTORY_BYTES: Final = 2560 * 1024**2

# A stored error message (the report item holds it; DynamoDB items are at most 400 KB);
# the client's error classes cut to the same bound, so it is defined with them.
MAX_ERROR_MESSAGE_BYTES: Final = wire.MAX_ERROR_MESSAGE_BYTES
# A message that lists the input's columns names at most this many, then a count.
MAX_LISTED_COLUMNS: Final = 20
# A column name quoted in a message is cut to this many characters.
MAX_QUOTED_NAME_CHARS: Final = 64

# ---------------------------------------------------------------------------------------
# Submit time: checked by the edge before it acknowledges a report (and again by the
# workers), each as a field violation naming the field (reportgrid/validation.py and the
# kinds' schemas in reportgrid/engine/).
# ---------------------------------------------------------------------------------------
# The parameters of any kind, before its JSON Schema runs: a request over these is
# rejected in O(limit) work, so jsonschema never sees a huge document on the edge's event
# loop. Every kind's schema is bounded below them (KindSpec refuses one that is not).
MAX_PARAMS_NODES: Final = 40_000
MAX_PARAMS_DEPTH: Final = 8
# jsonschema stops after this many errors in one request: collecting every error of a
# bad list of thousands would cost as much as the huge document did.
MAX_SCHEMA_ERRORS: Final = 50
# The serialized parameters (Struct bytes): the report item keeps them for
# REPORT_VIEW_FULL (zlib-compressed, records.request_spec), and an item is at most 400 KB
# with up to MAX_INLINE_RESULT_BYTES (300 KiB) of result in it: 300 KiB + 64 KiB + the
# labels (64 x 126 bytes) + the rest stays below. Every kind's largest valid document
# (16 filters of 256 short values, tests/unit/engine) is far below it.
MAX_PARAMS_BYTES: Final = 64 * 1024

# Labels (SubmitReportRequest.labels, and the ListReportsRequest.labels filter): GCP's
# label rules in lowercase. A key starts with a letter; values may be empty.
MAX_LABELS: Final = 64
MAX_LABEL_KEY_CHARS: Final = 63
MAX_LABEL_VALUE_CHARS: Final = 63

# Tabular parameters (summary, timeseries).
MAX_GROUP_BY: Final = 8
MAX_AGGREGATES: Final = 32
MAX_FILTERS: Final = 16
MAX_IN_VALUES: Final = 256
MAX_TOP_N: Final = 1_000_000
MAX_FILTER_TEXT_CHARS: Final = 1024
# A column name, in parameters and in an inline input's header.
MAX_COLUMN_NAME_CHARS: Final = 128

# Inline input (CSV header / JSON keys; its bytes are bounded by
# resources.MAX_INLINE_INPUT_BYTES). DuckDB's cost grows with columns far faster than with
# bytes: 120,000 empty column names in 240 KiB once cost 121 s and 3 GB.
MAX_INLINE_COLUMNS: Final = 1000
# Counted as line breaks (CSV) or records (JSON): an upper bound on the rows.
MAX_INLINE_ROWS: Final = 100_000

# S3 input keys (s3://<input bucket>/tenants/<tenant>/<rest>): S3 allows 1024 bytes.
MAX_S3_KEY_BYTES: Final = 1024

# synthetic (light: the stream-worker Lambda, 120 s timeout, 512 MB /tmp) and
# synthetic_heavy (the Fargate queue workers).
MAX_LIGHT_CPU_MS: Final = 10_000
MAX_HEAVY_CPU_MS: Final = 600_000
MAX_LIGHT_OUTPUT_BYTES: Final = 50 * 1024**2
MAX_HEAVY_OUTPUT_BYTES: Final = 512 * 1024**2
MAX_LIGHT_OUTPUT_ROWS: Final = 1_000_000
MAX_HEAVY_OUTPUT_ROWS: Final = 5_000_000
MAX_PAYLOAD_BYTES_PER_ROW: Final = 64 * 1024

# ---------------------------------------------------------------------------------------
# Fairness between tenants: enforced by the workers before a run is claimed
# (workers/functions/tenant_slots.py; docs/RELIABILITY.md "Fairness between tenants").
# ---------------------------------------------------------------------------------------
# A tenant without a tenant item (reportgrid/tenants.py) may have this many reports running
# at once in a region: half of what the stream workers hold at once (default_max_running),
# so one such tenant alone never fills more than half of the light path. This is its value
# for the template's default capacity (11 shards x parallelization 2 x batch 100 / 2); the
# CDK sets REPORTGRID_DEFAULT_MAX_RUNNING from the deployment's own capacity.
DEFAULT_MAX_RUNNING: Final = 1_100
# A task over its tenant's cap is put off (the heavy queue, SQS DelaySeconds) for
# min(DEFER_MAX_SECONDS, DEFER_BASE_SECONDS x 2^(times put off)), less up to half as jitter.
DEFER_BASE_SECONDS: Final = 1.0
DEFER_MAX_SECONDS: Final = 30.0


def default_max_running(*, shards: int, parallelization_factor: int, batch_size: int) -> int:
    """The running reports of a tenant without a tenant item, from the light path's size:
    every stream-worker invocation (shards x parallelization factor at once) claims its
    whole batch before it runs them one by one, so the light path holds up to
    shards x factor x batch reports RUNNING at once; such a tenant gets half."""
    return max(1, shards * parallelization_factor * batch_size // 2)
