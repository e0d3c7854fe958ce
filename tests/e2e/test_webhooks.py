"""Webhooks in the local region, as an operator and a tenant's receiver meet them: the
operator gives a tenant a default webhook and reads its signing secret (`reportgrid
admin`); the receiver, a real HTTP server on 127.0.0.1, verifies every delivery with the
SDK's helper (reportgrid.webhooks.verify).

One region (`reportgrid-dev`) serves the module. Its webhook function runs from its asset
with the template's settings except the retry window and backoff base, shortened to
seconds through `reportgrid-dev --tune` (launch.TUNING_OVERRIDES): the template's day of
retries is what the infra test pins (tests/infra/test_webhooks.py).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from reportgrid import events
from reportgrid.client import ReportClient
from reportgrid.client._messages import build_submit_request
from reportgrid.local import emf
from reportgrid.local.bootstrap import client
from reportgrid.resources import (
    ENV,
    METRIC,
    METRIC_SERVICE_DIMENSION,
    METRICS_NAMESPACE,
    SERVICE_WEBHOOKS,
    WEBHOOK_DLQ_NAME,
)
from reportgrid.states import State
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.v1 import reports_pb2_grpc as pb_grpc
from reportgrid.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify
from tests.e2e.test_local_region import REGION, REPORTGRID, DevRegion, running_region

pytestmark = pytest.mark.slow

TENANT = "hooks"
# The retry window and backoff base of the webhook function here (seconds): a receiver
# down for ~1 s is retried into; one that never answers is given up after WINDOW_S.
WINDOW_S = 5
BASE_S = 0.5
TUNING = {
    ENV.WEBHOOK_RETRY_WINDOW_SECONDS: str(WINDOW_S),
    ENV.WEBHOOK_BACKOFF_BASE_SECONDS: str(BASE_S),
}
DATA = b"region,amount\neu,1\nus,2\n"
SUM = {"group_by": ["region"], "aggregates": [{"op": "sum", "column": "amount"}]}


@dataclass
class Receiver:
    """A tenant's webhook receiver on 127.0.0.1: records every POST, answers 204. It may
    start later than its port is chosen (a receiver that is down for a while)."""

    port: int = 0
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        got = self.got

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                got.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def for_report(self, report_id: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in list(self.got) if json.loads(b)["report_id"] == report_id]


def _closed_port() -> int:
    """A port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Hooks:
    region: DevRegion
    state: Path
    api_key: str
    secret: str
    receiver: Receiver

    def admin(self, *argv: str) -> str:
        where = ["--region", REGION, "--endpoint-url", self.region.moto_url]
        result = subprocess.run(
            [REPORTGRID, "admin", *where, *argv],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def client(self) -> ReportClient:
        return ReportClient(self.region.endpoint, api_key=self.api_key)

    def submit_notifying(self, url: str) -> str:
        """A light summary that names its own webhook (SubmitReportRequest.notify)."""
        request = build_submit_request("summary", SUM, input_data=DATA, input_format="csv")
        request.notify.url = url
        with grpc.insecure_channel(self.region.endpoint) as channel:
            reply = pb_grpc.ReportServiceStub(channel).SubmitReport(
                request, metadata=(("authorization", f"Bearer {self.api_key}"),), timeout=10
            )
        return str(reply.report_id)

    def function_log(self) -> Path:
        return self.state / "logs" / "functions" / REGION / f"{SERVICE_WEBHOOKS}.log"


@pytest.fixture(scope="module")
def hooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooks]:
    state = tmp_path_factory.mktemp("state")
    tune = [f"--tune={name}={value}" for name, value in TUNING.items()]
    receiver = Receiver().start()
    with running_region(state, *tune) as region:
        # Given a tenant made by the operator, with a key, its signing secret, and its
        # default webhook on the receiver
        setup = Hooks(region, state, "", "", receiver)
        setup.admin("tenant", "create", TENANT)
        setup.api_key = setup.admin("key", "create", TENANT)
        setup.secret = setup.admin("tenant", "webhook-secret", TENANT)
        setup.admin("tenant", "update", TENANT, "--webhook-url", receiver.url)
        yield setup
    receiver.stop()


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _verified(hooks: Hooks, delivery: tuple[dict[str, str], bytes]) -> dict[str, Any]:
    headers, body = delivery
    event = verify(body, headers[SIGNATURE_HEADER], hooks.secret)
    assert headers[EVENT_ID_HEADER] == event["event_id"]
    assert headers["Content-Type"] == "application/json"
    return event


def test_one_verified_delivery_per_terminal_state(hooks: Hooks) -> None:
    # When the tenant's reports end SUCCEEDED, FAILED and CANCELLED (none names a webhook)
    with hooks.client() as rg:
        ok = rg.submit("summary", SUM, input_data=DATA, input_format="csv").report_id
        bad = rg.submit(
            "summary", {**SUM, "group_by": ["nope"]}, input_data=DATA, input_format="csv"
        ).report_id
        slow = rg.submit("synthetic_heavy", {"cpu_ms": 60_000, "output_rows": 1}).report_id
        rg.cancel(slow)
        states = {r: rg.wait(r, timeout=30).state for r in (ok, bad, slow)}
    assert states == {
        ok: pb.REPORT_STATE_SUCCEEDED,
        bad: pb.REPORT_STATE_FAILED,
        slow: pb.REPORT_STATE_CANCELLED,
    }
    expected = {ok: State.SUCCEEDED, bad: State.FAILED, slow: State.CANCELLED}
    # Then the tenant's default webhook gets one delivery each, signed with its secret
    receiver = hooks.receiver
    _wait(lambda: all(receiver.for_report(r) for r in expected), 20, "three deliveries")
    time.sleep(1.5)  # long enough for a duplicate to arrive
    for report_id, state in expected.items():
        (delivery,) = receiver.for_report(report_id)
        event = _verified(hooks, delivery)
        assert event["state"] == state.value
        assert event["tenant"] == TENANT
        assert event["event_id"] == events.event_id(report_id, state)
        assert "notify_url" not in event  # where it goes is not news to the receiver
    # And each delivery is a step of its report's life (reportgrid trace reads these fields)
    steps = [
        json.loads(line[line.index("{") :])
        for line in hooks.function_log().read_text(errors="replace").splitlines()
        if '"webhook_delivered"' in line
    ]
    delivered = {s["report_id"]: s for s in steps if s.get("event") == "webhook_delivered"}
    for report_id in expected:
        assert delivered[report_id]["home_region"] == REGION
        assert delivered[report_id]["tenant"] == TENANT
    # EXPIRED is not announced: nothing is written when a report expires (events.py).


def test_a_receiver_down_for_a_while_gets_its_delivery_from_a_retry(hooks: Hooks) -> None:
    # Given a report's own webhook whose receiver is not listening yet
    late = Receiver(port=_closed_port())
    report_id = hooks.submit_notifying(late.url)
    event_id = events.event_id(report_id, State.SUCCEEDED)
    log = hooks.function_log()
    # When the first attempt has failed (the function said it retries)
    _wait(
        lambda: any(
            "retrying" in line and event_id in line
            for line in log.read_text(errors="replace").splitlines()
        ),
        20,
        "a failed first attempt",
    )
    late.start()
    try:
        # Then a retry delivers it, once, within the retry window
        _wait(lambda: late.for_report(report_id), WINDOW_S + 5, "the retried delivery")
        time.sleep(1.0)
        (delivery,) = late.for_report(report_id)
        assert _verified(hooks, delivery)["event_id"] == event_id
        assert not hooks.receiver.for_report(report_id)  # its own URL, not the default
    finally:
        late.stop()


def test_a_receiver_that_never_answers_ends_in_the_dlq_with_the_alarm_metric(
    hooks: Hooks,
) -> None:
    # Given a report whose webhook never answers (nothing listens there)
    started = time.monotonic()
    report_id = hooks.submit_notifying(f"http://127.0.0.1:{_closed_port()}/hook")
    sqs = client("sqs", REGION, hooks.region.moto_url)
    dlq = sqs.get_queue_url(QueueName=WEBHOOK_DLQ_NAME)["QueueUrl"]
    # Then after the retry window the delivery is in the webhook DLQ
    given_up: list[dict[str, Any]] = []
    while not given_up:
        assert time.monotonic() - started < WINDOW_S + 15, "not in the DLQ"
        reply = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in reply.get("Messages", []):
            body = json.loads(message["Body"])
            if body["detail"]["report_id"] == report_id:
                given_up.append(body)
    (dead,) = given_up
    assert dead["attempt"] >= 2  # retried before it gave up
    assert time.monotonic() - started >= WINDOW_S
    # And the function emitted the metric the WebhooksGivenUp alarm reads
    key = emf.MetricKey.of(
        METRICS_NAMESPACE, METRIC.WEBHOOKS_GIVEN_UP, {METRIC_SERVICE_DIMENSION: SERVICE_WEBHOOKS}
    )
    with contextlib.suppress(FileNotFoundError):
        _wait(
            lambda: key in emf.emitted_in(hooks.function_log().read_text().splitlines()),
            5,
            "the WebhooksGivenUp metric",
        )
    assert key in emf.emitted_in(hooks.function_log().read_text().splitlines())
