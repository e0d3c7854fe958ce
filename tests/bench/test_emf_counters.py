"""The edge's per-status counters, read back from the EMF lines it logs."""

from __future__ import annotations

import io

from bench.edge import read_emf_counts
from grpc_edge.metrics import EdgeMetrics


def test_counts_by_code_from_the_edge_metrics_writer() -> None:
    edge_metrics = EdgeMetrics()
    for code, n in (("OK", 5), ("UNAVAILABLE", 2)):
        for _ in range(n):
            edge_metrics.record("SubmitReport", code, 0.001)
    edge_metrics.record("GetReport", "OK", 0.001)
    out = io.StringIO()
    edge_metrics.flush(out)
    edge_metrics.record("SubmitReport", "OK", 0.001)  # a second flush adds up
    edge_metrics.flush(out)
    log = "edge listening on 127.0.0.1:1\nnot json {\n" + out.getvalue()
    assert read_emf_counts(log, "SubmitReport") == {"OK": 6, "UNAVAILABLE": 2}
    assert read_emf_counts(log, "GetReport") == {"OK": 1}
    assert read_emf_counts(log, "ListReports") == {}


def test_no_request_documents_means_unknown_not_zero() -> None:
    assert read_emf_counts('{"level": "INFO", "message": "started"}\n', "SubmitReport") is None
