"""The edge's EMF documents carry exactly the names and the {service} dimension the
dashboards read (reportgrid.resources.METRIC), plus per-method and per-status detail."""

from __future__ import annotations

import io
import json
from collections import deque
from typing import Any

from grpc_edge.metrics import EdgeMetrics
from reportgrid import resources

M = resources.METRIC
SERVICE = {resources.METRIC_SERVICE_DIMENSION: resources.SERVICE_EDGE}


def documents(metrics: EdgeMetrics) -> list[dict[str, Any]]:
    out = io.StringIO()
    metrics.flush(out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def rollup_value(docs: list[dict[str, Any]], name: str) -> Any:
    """The value of `name` in documents that emit it under the {service} dimension set
    alone, summed when it is a count (CloudWatch adds them up)."""
    values = []
    for doc in docs:
        meta = doc["_aws"]["CloudWatchMetrics"][0]
        assert meta["Namespace"] == resources.METRICS_NAMESPACE
        if [resources.METRIC_SERVICE_DIMENSION] in meta["Dimensions"] and name in doc:
            assert doc[resources.METRIC_SERVICE_DIMENSION] == resources.SERVICE_EDGE
            values.append(doc[name])
    if values and all(isinstance(v, int) for v in values):
        return sum(values)
    return values


def test_dashboard_metrics_have_the_service_rollup() -> None:
    # Given calls, sheds, cache reads and batches seen between two flushes
    metrics = EdgeMetrics()
    counters = {"shed": 0, "hits": 0, "misses": 0}
    batches: deque[int] = deque()
    metrics.watch_counter(M.SHED_REQUESTS, lambda: counters["shed"])
    metrics.watch_counter(M.CACHE_HITS, lambda: counters["hits"])
    metrics.watch_counter(M.CACHE_MISSES, lambda: counters["misses"])
    metrics.watch_samples(M.BATCH_SIZE, batches)
    for code in ("OK", "OK", "OK", "UNAVAILABLE", "INVALID_ARGUMENT"):
        metrics.record("SubmitReport", code, 0.004)
    metrics.record("GetReport", "INTERNAL", 0.001)
    counters.update(shed=2, hits=7, misses=1)
    batches.extend([3, 5])
    # When they are flushed
    docs = documents(metrics)
    # Then every dashboard metric is there under {service}
    assert rollup_value(docs, M.REQUESTS) == 6
    assert rollup_value(docs, M.REQUEST_FAULTS) == 2  # UNAVAILABLE + INTERNAL
    assert rollup_value(docs, M.SHED_REQUESTS) == 2
    assert rollup_value(docs, M.CACHE_HITS) == 7
    assert rollup_value(docs, M.CACHE_MISSES) == 1
    assert rollup_value(docs, M.BATCH_SIZE) == [[3, 5]]
    [latency] = rollup_value(docs, M.REQUEST_LATENCY)
    assert sorted(latency) == [1.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    units = {
        m["Name"]: m["Unit"] for d in docs for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    }
    assert units[M.REQUEST_LATENCY] == "Milliseconds"
    assert units[M.REQUESTS] == "Count"


def test_per_status_counts_stay_available_by_method_and_code() -> None:
    metrics = EdgeMetrics()
    metrics.record("SubmitReport", "OK", 0.001)
    metrics.record("SubmitReport", "RESOURCE_EXHAUSTED", 0.0)
    docs = documents(metrics)
    by_code = {
        d["Code"]: d[M.REQUESTS] for d in docs if d.get("Method") == "SubmitReport" and "Code" in d
    }
    assert by_code == {"OK": 1, "RESOURCE_EXHAUSTED": 1}
    dims = [d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for d in docs if "Code" in d]
    assert all(["service", "Method", "Code"] in sets for sets in dims)


def test_a_flush_resets_counts_and_shed_requests_is_always_emitted() -> None:
    metrics = EdgeMetrics()
    metrics.watch_counter(M.SHED_REQUESTS, lambda: 0)
    metrics.record("GetReport", "OK", 0.001)
    documents(metrics)
    second = documents(metrics)
    assert rollup_value(second, M.REQUESTS) == []  # nothing new
    assert rollup_value(second, M.SHED_REQUESTS) == 0  # an alarm sees 0, not no data
