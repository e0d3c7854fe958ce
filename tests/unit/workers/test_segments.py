"""functions.segments without AWS: the daemon address, the sampling decision, that a
region without a daemon (make dev) neither blocks nor logs per segment, the size bound,
and the Lambda path's batching (a recording stand-in for the X-Ray client: the upload
against the moto server is tests/integration/workers/test_segments.py)."""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any

import pytest

from functions.segments import (
    MAX_DOCUMENT_BYTES,
    UPLOAD_BATCH,
    SegmentSender,
    daemon_address,
    is_sampled,
)
from reportgrid import tracing
from reportgrid.task.v1.task_pb2 import TaskRecord


def _task(header: str) -> TaskRecord:
    return TaskRecord(report_id="rpt_x", tenant="t", home_region="eu-west-1", trace_header=header)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:2000", ("127.0.0.1", 2000)),
        ("169.254.79.129:2000", ("169.254.79.129", 2000)),
        ("tcp:127.0.0.1:2001 udp:127.0.0.2:2002", ("127.0.0.2", 2002)),
        ("", None),
        (None, None),
        ("no-port", None),
        ("host:port", None),
    ],
)
def test_daemon_address(value: str | None, expected: tuple[str, int] | None) -> None:
    assert daemon_address(value) == expected


def test_an_undecided_trace_is_decided_by_its_id_the_same_everywhere() -> None:
    decided = [is_sampled(tracing.mint()) for _ in range(4000)]
    assert 0.02 < sum(decided) / len(decided) < 0.08  # ~5 %, the X-Ray default rate
    context = tracing.mint()
    assert len({is_sampled(context) for _ in range(10)}) == 1
    assert is_sampled(tracing.TraceContext(context.trace_id, sampled=True))
    assert not is_sampled(tracing.TraceContext(context.trace_id, sampled=False), percent=100)


def test_no_daemon_listening_neither_blocks_nor_logs_per_segment(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A port nobody listens on (bound, then closed): the daemon-less local region.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    address = probe.getsockname()
    probe.close()
    sender = SegmentSender(address, name="w")
    task = _task("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")
    caplog.set_level(logging.DEBUG, logger="functions.segments")
    started = time.perf_counter()
    for _ in range(100):
        with sender.segment(task) as span:
            assert span is not None
    assert time.perf_counter() - started < 1.0
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_no_address_sends_nothing_and_opens_no_socket() -> None:
    sender = SegmentSender(None, name="w")
    assert not sender.enabled
    with sender.segment(_task("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")) as span:
        assert span is None


def test_a_task_without_a_trace_header_gets_no_segment() -> None:
    sender = SegmentSender(("127.0.0.1", 9), name="w")
    assert sender.start(_task("")) is None
    assert sender.start(_task("garbage")) is None


def test_a_segment_too_big_for_a_datagram_drops_its_calls() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(5)
    sender = SegmentSender(listener.getsockname(), name="w")
    span = sender.start(_task("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"))
    assert span is not None
    span.subsegments.extend({"id": str(n), "pad": "x" * 2000} for n in range(64))
    sender.send(span)
    data, _ = listener.recvfrom(65536)
    listener.close()
    assert len(data) <= MAX_DOCUMENT_BYTES
    segment = json.loads(data.partition(b"\n")[2])
    assert segment["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert "subsegments" not in segment


SAMPLED = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"


def test_a_segment_that_does_not_fit_even_without_its_calls_is_dropped_once_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.5)
    sender = SegmentSender(listener.getsockname(), name="w")
    for _ in range(2):
        span = sender.start(_task(SAMPLED))
        assert span is not None
        span.annotations["huge"] = "x" * MAX_DOCUMENT_BYTES
        sender.send(span)
    with pytest.raises(TimeoutError):
        listener.recvfrom(65536)  # nothing sent: a datagram this big fails or is cut
    listener.close()
    assert len([r for r in caplog.records if "over the limit" in r.getMessage()]) == 1


class RecordingXRay:
    def __init__(self, unprocessed: list[dict[str, str]] | None = None) -> None:
        self.calls: list[list[str]] = []
        self._unprocessed = unprocessed or []

    def put_trace_segments(self, TraceSegmentDocuments: list[str]) -> dict[str, Any]:
        self.calls.append(TraceSegmentDocuments)
        return {"UnprocessedTraceSegments": self._unprocessed}


def _sent(sender: SegmentSender, count: int) -> None:
    for _ in range(count):
        span = sender.start(_task(SAMPLED))
        assert span is not None
        sender.send(span)


def test_the_lambda_path_keeps_segments_until_flush_and_uploads_in_batches() -> None:
    xray = RecordingXRay()
    sender = SegmentSender(None, name="w", api=xray)  # type: ignore[arg-type]
    assert sender.enabled
    _sent(sender, UPLOAD_BATCH + 3)
    assert xray.calls == []  # nothing on the report's path
    sender.flush()
    assert [len(c) for c in xray.calls] == [UPLOAD_BATCH, 3]
    documents = [json.loads(d) for c in xray.calls for d in c]
    assert {d["trace_id"] for d in documents} == {"1-5759e988-bd862e3fe1be46a994272793"}
    assert len({d["id"] for d in documents}) == UPLOAD_BATCH + 3
    sender.flush()  # sent once
    assert len(xray.calls) == 2


def test_an_upload_refused_or_failing_is_logged_once_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused = RecordingXRay([{"Id": "1", "ErrorCode": "x", "Message": "bad"}])
    sender = SegmentSender(None, name="w", api=refused)  # type: ignore[arg-type]
    for _ in range(2):
        _sent(sender, 1)
        sender.flush()
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1

    class Down:
        def put_trace_segments(self, **_: Any) -> dict[str, Any]:
            raise ConnectionError("no route")

    failing = SegmentSender(None, name="w", api=Down())  # type: ignore[arg-type]
    _sent(failing, 1)
    failing.flush()
    assert any("cannot upload" in r.getMessage() for r in caplog.records)


def test_for_lambda_uploads_only_when_the_function_traces(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[RecordingXRay] = []

    def api() -> Any:
        made.append(RecordingXRay())
        return made[-1]

    monkeypatch.delenv("AWS_XRAY_DAEMON_ADDRESS", raising=False)
    assert not SegmentSender.for_lambda(name="w", api=api).enabled
    assert made == []  # no client built for a function that does not trace
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129:2000")
    traced = SegmentSender.for_lambda(name="w", api=api)
    assert traced.enabled
    _sent(traced, 1)
    traced.flush()
    assert len(made[0].calls) == 1
