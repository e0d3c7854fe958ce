"""`reportgrid trace` and `reportgrid top` against a local region started as a user would
(`reportgrid-dev`), its logs where `make dev` keeps them (<state>/logs).

A heavy report's life: what its record says (accepted, started, ended) and every log line
that names it, in time order with the time between steps. Then Ctrl-C, so the edge
flushes its metrics, and `top` shows the region's requests and reports from the EMF lines.
"""

from __future__ import annotations

import itertools
import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from functions.stream_worker.handler import SEGMENT_NAME
from reportgrid import tracing
from reportgrid.client import ReportClient
from reportgrid.local.bootstrap import client
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.v1.reports_pb2_grpc import ReportServiceStub
from tests.e2e import test_local_region as local_region
from tests.e2e.test_local_region import DevRegion

pytestmark = pytest.mark.slow

dev = local_region.dev  # a local region of this module's own


def _state_dir(region: DevRegion) -> Path:
    argv = region.process.args
    assert isinstance(argv, list)  # the fixture's argv list
    args = [str(arg) for arg in argv]
    return Path(args[args.index("--state-dir") + 1])


def _traced_through(dev: DevRegion, report_id: str, last: str = "event_published") -> Any:
    """`trace --json` once the `last` step is logged: the events function reads the table
    stream on its own poll, a moment after the terminal write that `--wait` saw."""
    deadline = time.monotonic() + 20
    while True:
        traced = dev.cli("trace", report_id, "--state-dir", str(_state_dir(dev)), "--json")
        assert traced.returncode == 0, traced.stderr
        found = json.loads(traced.stdout)
        if any(s["fields"].get("event") == last for s in found["steps"]):
            return found
        if time.monotonic() > deadline:
            return found  # the caller's assertion shows what was there
        time.sleep(0.5)


def test_a_heavy_reports_life_in_order_with_durations(dev: DevRegion) -> None:
    # Given a heavy report that ran on the queue worker
    submitted = dev.cli("submit", "synthetic_heavy", "--param", "output_rows=5", "--wait", "--json")
    final = json.loads(submitted.stdout.strip().splitlines()[-1])
    assert final["state"] == "REPORT_STATE_SUCCEEDED", submitted.stderr
    report_id = final["report_id"]
    # When it is traced from the local region's logs (and its record: the API key is set)
    traced = _traced_through(dev, report_id)
    steps = traced["steps"]
    # Then every step is there, oldest first, each with the time since the one before
    record = [s["event"] for s in steps if s["source"] == "record"]
    assert record == ["accepted", "started", "ended SUCCEEDED"], steps
    assert [s["at_ms"] for s in steps] == sorted(s["at_ms"] for s in steps)
    assert steps[0]["delta_ms"] == 0
    for before, step in itertools.pairwise(steps):
        assert step["delta_ms"] == step["at_ms"] - before["at_ms"]
        assert step["since_start_ms"] == step["at_ms"] - steps[0]["at_ms"]
    assert {s["region"] for s in steps if s["source"] == "record"} == {local_region.REGION}
    # Every log line it found names the report, and the workers' steps come in the order
    # they happened: forwarded by the stream worker, picked up and ended by the queue worker
    for step in steps:
        if step["source"] != "record":
            assert report_id in json.dumps(step), step
    worker_steps = [s["fields"]["event"] for s in steps if s["fields"].get("event")]
    assert worker_steps == ["forwarded", "picked_up", "terminal", "event_published"], steps
    (terminal,) = (s["fields"] for s in steps if s["fields"].get("event") == "terminal")
    assert 0 < terminal["time_to_terminal_ms"] < 120_000, terminal  # the slowest-reports query
    events = [s["event"] for s in steps]
    assert events.index("accepted") < events.index("forwarded")
    assert events.index("terminal") <= events.index("ended SUCCEEDED") + 1
    # ...each line with the report's fields and one trace id, the one the edge minted
    traced_ids = traced["trace_ids"]
    assert len(traced_ids) == 1, traced_ids
    for step in steps:
        if step["fields"].get("event"):
            fields = step["fields"]
            assert (fields["report_id"], fields["home_region"]) == (report_id, local_region.REGION)
            assert fields["tenant"]
            assert fields["trace_id"] == traced_ids[0]
    text = dev.cli("trace", report_id, "--state-dir", str(_state_dir(dev)))
    assert "ended SUCCEEDED" in text.stdout
    assert f"trace {traced_ids[0]}" in text.stdout


def test_a_light_reports_claim_by_the_stream_worker_is_a_step(dev: DevRegion) -> None:
    submitted = dev.cli("submit", "synthetic", "--param", "output_rows=2", "--wait", "--json")
    final = json.loads(submitted.stdout.strip().splitlines()[-1])
    assert final["state"] == "REPORT_STATE_SUCCEEDED", submitted.stderr
    steps = _traced_through(dev, final["report_id"])["steps"]
    worker = [s["fields"] for s in steps if s["fields"].get("event")]
    assert [f["event"] for f in worker] == ["picked_up", "terminal", "event_published"], steps
    assert {f.get("service") for f in worker[:2]} == {"reportgrid-stream-worker"}, worker
    assert len({f["trace_id"] for f in worker}) == 1, worker


def test_a_light_reports_segment_reaches_xray_in_the_callers_trace(dev: DevRegion) -> None:
    # Given a caller that sampled its trace: the stream worker, run from its Lambda asset
    # with the template's active tracing, uploads the report's segment (PutTraceSegments,
    # judged by the local IAM against the function's role) to the region's X-Ray.
    root = f"1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
    request = pb.SubmitReportRequest(kind="synthetic")
    request.params.update({"output_rows": 2})
    with ReportClient(dev.endpoint, api_key=dev.api_key) as rg:
        with grpc.insecure_channel(dev.endpoint) as channel:
            submitted = ReportServiceStub(channel).SubmitReport(
                request,
                metadata=[
                    ("authorization", f"Bearer {dev.api_key}"),
                    (tracing.XRAY_METADATA, f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1"),
                ],
                timeout=10,
            )
        assert rg.wait(submitted.report_id, timeout=60).state == pb.REPORT_STATE_SUCCEEDED
    xray = client("xray", local_region.REGION, dev.moto_url)
    # The upload ends the invocation, a moment after the terminal write that `wait` saw.
    deadline = time.monotonic() + 20
    while True:
        documents = [
            json.loads(segment["Document"])
            for trace in xray.batch_get_traces(TraceIds=[root])["Traces"]
            for segment in trace["Segments"]
        ]
        ours = [d for d in documents if d["name"] == SEGMENT_NAME]
        if ours or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    (segment,) = ours
    assert segment["annotations"]["report_id"] == submitted.report_id
    assert segment["annotations"]["outcome"] == "SUCCEEDED"


def test_top_shows_requests_and_reports_once_the_edge_flushed(dev: DevRegion) -> None:
    # Ctrl-C: the edge drains and flushes its last minute of metrics.
    dev.process.send_signal(signal.SIGINT)
    assert dev.process.wait(60) == 0, "\n".join(dev.lines[-30:])
    shown = dev.cli(
        "top", "--state-dir", str(_state_dir(dev)), "--window", "3600", "--json", timeout=30
    )
    assert shown.returncode == 0, shown.stderr
    figures = json.loads(shown.stdout)
    assert figures["requests_per_second"]["SubmitReport"]["OK"] > 0, figures
    assert figures["latency_ms"]["SubmitReport"]["p99"] > 0
    assert figures["reports_per_second"]["reportgrid-queue-worker"]["SUCCEEDED"] > 0
    assert figures["shed"] == 0
