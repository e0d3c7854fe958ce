"""The local region as a user meets it: `reportgrid-dev` in one process, the `reportgrid`
CLI in others. Numbers are checked against values computed here with csv/statistics.

The region is started once for the module; the last test stops it with SIGINT (Ctrl-C)
and checks that no process it started is left.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from reportgrid.local.bootstrap import LOCAL_ACCOUNT, client, local_input_bucket
from reportgrid.local.dev import DEV_TENANT
from reportgrid.local.servers import free_port
from reportgrid.resources import (
    ENV,
    EVENT_BUS_NAME,
    EVENT_SOURCE,
    MAX_INLINE_RESULT_BYTES,
    result_object_key,
    results_bucket_name,
    tenant_input_prefix,
)

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
REPORTGRID = str(BIN / "reportgrid")
REPORTGRID_DEV = str(BIN / "reportgrid-dev")
READY_TIMEOUT = 90.0
REGION = "us-east-1"


@dataclass
class DevRegion:
    process: subprocess.Popen[str]
    endpoint: str = ""
    api_key: str = ""
    moto_url: str = ""
    lines: list[str] = field(default_factory=list)
    descendants: list[psutil.Process] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {**os.environ, ENV.CLIENT_ENDPOINT: self.endpoint, ENV.CLIENT_API_KEY: self.api_key}

    def cli(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [REPORTGRID, *argv],
            check=False,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _read(region: DevRegion) -> None:
    assert region.process.stdout is not None
    for line in region.process.stdout:
        region.lines.append(line.rstrip("\n"))


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevRegion]:
    with running_region(tmp_path_factory.mktemp("state")) as region:
        yield region


@contextlib.contextmanager
def running_region(state: Path, *options: str) -> Iterator[DevRegion]:
    """`reportgrid-dev` with its state in `state` (and `options`, e.g. --tune), until it is
    ready; at the end stopped, and no component may have failed."""
    process = subprocess.Popen(
        [
            REPORTGRID_DEV,
            "--port",
            str(free_port()),
            "--state-dir",
            str(state),
            "--workers",
            "1",
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    )
    region = DevRegion(process)
    threading.Thread(target=_read, args=(region,), daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT
    while not (region.endpoint and region.api_key):
        assert process.poll() is None, "reportgrid-dev exited:\n" + "\n".join(region.lines)
        assert time.monotonic() < deadline, "not ready:\n" + "\n".join(region.lines[-40:])
        for line in list(region.lines):
            name, _, value = line.removeprefix("  export ").partition("=")
            if name == ENV.CLIENT_ENDPOINT:
                region.endpoint = value
            elif name == ENV.CLIENT_API_KEY:
                region.api_key = value
            elif line.startswith("started moto server on "):
                region.moto_url = line.split()[-1]
        time.sleep(0.1)
    region.descendants = psutil.Process(process.pid).children(recursive=True)
    yield region
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(60)
    # Results alone do not prove the region worked as deployed: a light path whose every
    # invocation fails is re-driven to the heavy workers and still gives the right numbers.
    problems = component_failures(state / "logs")
    assert not problems, "components failed while the results looked right:\n" + "\n".join(
        problems[:20]
    )


# A line in a component's log that means the deployment is broken even when a report
# succeeded: a call its role does not allow, a function that failed to load, timed out,
# died or raised (a dead light path is re-driven to the heavy workers, which still give
# the right numbers), and a task the stream gave up on.
FAILURE_MARKERS = (
    "iam: denied",
    "Runtime.ImportModuleError",
    "Sandbox.Timedout",
    "Runtime.ExitError",
    "handler raised on",
    "RetryAttemptsExhausted",
)


def component_failures(logs: Path) -> list[str]:
    """Each failure line in the region's logs, with its file."""
    found = []
    for log in sorted(logs.rglob("*.log")):
        found += [
            f"{log.relative_to(logs)}: {line[:300]}"
            for line in log.read_text(errors="replace").splitlines()
            if any(marker in line for marker in FAILURE_MARKERS)
        ]
    return found


def _sales_csv(rows: int, seed: int) -> str:
    rng = random.Random(seed)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["region", "product", "amount"])
    for _ in range(rows):
        writer.writerow(
            [rng.choice(["eu", "us", "apac"]), rng.choice(["a", "b"]), rng.randint(1, 1000)]
        )
    return buffer.getvalue()


def _expected(text: str) -> dict[str, tuple[float, int, float]]:
    groups: dict[str, list[float]] = defaultdict(list)
    for row in csv.DictReader(io.StringIO(text)):
        groups[row["region"]].append(float(row["amount"]))
    return {k: (sum(v), len(v), statistics.fmean(v)) for k, v in groups.items()}


SUMMARY_PARAMS = [
    "--param",
    'group_by=["region"]',
    "--param",
    'aggregates=[{"op": "sum", "column": "amount"}, {"op": "count"}, '
    '{"op": "avg", "column": "amount"}]',
]


def _check(report: Path, expected: dict[str, tuple[float, int, float]]) -> None:
    rows = list(csv.DictReader(report.open()))
    got = {
        r["region"]: (float(r["sum_amount"]), int(r["count"]), float(r["avg_amount"])) for r in rows
    }
    assert got.keys() == expected.keys()
    for region, (total, count, mean) in expected.items():
        assert got[region][0] == pytest.approx(total)
        assert got[region][1] == count
        assert got[region][2] == pytest.approx(mean)


def test_submit_summary_inline_waits_and_writes_the_right_numbers(
    dev: DevRegion, tmp_path: Path
) -> None:
    # Given a CSV (light: inline input runs on the stream worker)
    text = _sales_csv(300, seed=1)
    data = tmp_path / "sales.csv"
    data.write_text(text)
    out = tmp_path / "r.csv"
    # When the user submits it with --wait --out
    result = dev.cli(
        "submit", "summary", "--input", str(data), *SUMMARY_PARAMS, "--wait", "--out", str(out)
    )
    # Then the report holds the same numbers as csv/statistics
    assert result.returncode == 0, result.stderr
    _check(out, _expected(text))


def test_heavy_summary_over_an_s3_input_completes(dev: DevRegion, tmp_path: Path) -> None:
    # Given a CSV uploaded to a bucket of the local region (S3 input runs heavy, on SQS)
    text = _sales_csv(2000, seed=2)
    s3 = client("s3", REGION, dev.moto_url)
    key = tenant_input_prefix(DEV_TENANT) + "sales.csv"
    s3.put_object(Bucket=local_input_bucket(REGION), Key=key, Body=text.encode())
    out = tmp_path / "heavy.csv"
    result = dev.cli(
        "submit",
        "summary",
        "--input-s3",
        f"s3://{local_input_bucket(REGION)}/{key}",
        "--format",
        "csv",
        *SUMMARY_PARAMS,
        "--wait",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    _check(out, _expected(text))


def test_synthetic_heavy_runs_on_the_queue_worker(dev: DevRegion, tmp_path: Path) -> None:
    out = tmp_path / "synthetic.csv"
    result = dev.cli(
        "submit",
        "synthetic_heavy",
        "--param",
        "output_rows=25",
        "--wait",
        "--out",
        str(out),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout.strip().splitlines()[-1])
    assert final["state"] == "REPORT_STATE_SUCCEEDED"
    assert len(list(csv.reader(out.open()))) == 26  # header and 25 rows


def test_a_result_over_the_inline_limit_is_stored_in_the_bucket_and_downloaded_intact(
    dev: DevRegion, tmp_path: Path
) -> None:
    # Given a light report whose result compresses to well over the inline limit (its
    # payload is hex digests, which deflate about 2:1): the stream function puts it in the
    # results bucket under its role, and the edge streams it back under its own
    rows, payload = 100, 3 * MAX_INLINE_RESULT_BYTES
    out = tmp_path / "large.csv"
    result = dev.cli(
        "submit",
        "synthetic",
        "--param",
        f"output_rows={rows}",
        "--param",
        f"output_bytes={payload}",
        "--param",
        "seed=13",
        "--wait",
        "--out",
        str(out),
        "--json",
    )
    # Then the CLI downloaded it (it writes --out only when the SHA-256 matched)
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout.strip().splitlines()[-1])
    metadata = final["result"]
    assert metadata.get("download_required") is True, f"stored inline: {metadata}"
    data = out.read_bytes()
    assert len(data) == int(metadata["size_bytes"])
    assert hashlib.sha256(data).hexdigest() == metadata["sha256"]
    assert len(list(csv.reader(io.StringIO(data.decode())))) == rows + 1
    # And the bytes came from the results bucket: the object under the report's key,
    # compressed, with the result's SHA-256
    s3 = client("s3", REGION, dev.moto_url)
    bucket = results_bucket_name(LOCAL_ACCOUNT, REGION)
    head = s3.head_object(Bucket=bucket, Key=result_object_key(final["report_id"]))
    assert head["Metadata"]["sha256"] == metadata["sha256"]
    assert head["ContentEncoding"] == "deflate"
    assert MAX_INLINE_RESULT_BYTES < head["ContentLength"] < len(data)


def _submit(region: DevRegion, *argv: str) -> dict[str, object]:
    result = region.cli("submit", *argv, "--wait", "--json")
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr
    final: dict[str, object] = json.loads(lines[-1])
    return final


def test_each_terminal_report_publishes_exactly_one_completion_event(
    dev: DevRegion, tmp_path: Path
) -> None:
    # Given a rule on the region's event bus that copies every completion event to a queue
    # (the completion-event function runs on the table's stream, filter from the template)
    sqs = client("sqs", REGION, dev.moto_url)
    events = client("events", REGION, dev.moto_url)
    queue_url = sqs.create_queue(QueueName="e2e-completion-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.put_rule(
        Name="e2e-completion-events",
        EventBusName=EVENT_BUS_NAME,
        EventPattern=json.dumps({"source": [EVENT_SOURCE]}),
        State="ENABLED",
    )
    events.put_targets(
        Rule="e2e-completion-events",
        EventBusName=EVENT_BUS_NAME,
        Targets=[{"Id": "e2e", "Arn": queue_arn}],
    )
    data = tmp_path / "sales.csv"
    data.write_text("region,amount\neu,1\nus,2\n")
    # When a light report succeeds and another fails on its input
    ok = _submit(dev, "summary", "--input", str(data), *SUMMARY_PARAMS)
    bad = _submit(
        dev, "summary", "--input", str(data), "--param", 'group_by=["nope"]', *SUMMARY_PARAMS[2:]
    )
    assert (ok["state"], bad["state"]) == ("REPORT_STATE_SUCCEEDED", "REPORT_STATE_FAILED")
    ours = {str(ok["report_id"]): "SUCCEEDED", str(bad["report_id"]): "FAILED"}
    # Then the queue receives one event per report, with its state, and none twice
    got: list[dict[str, object]] = []
    quiet_until = time.monotonic() + 12.0
    while time.monotonic() < quiet_until:
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in reply.get("Messages", []):
            detail = json.loads(message["Body"])["detail"]
            if detail["report_id"] in ours:
                got.append(detail)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        if len(got) >= len(ours) and quiet_until - time.monotonic() > 2.0:
            quiet_until = time.monotonic() + 2.0  # a little longer, for a duplicate
    by_report = {str(d["report_id"]): str(d["state"]) for d in got}
    assert by_report == ours, got
    ids = [d["event_id"] for d in got]
    assert len(ids) == len(set(ids)) == len(ours), got


def test_reflection_lists_the_service_and_its_methods(dev: DevRegion) -> None:
    with grpc.insecure_channel(dev.endpoint) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert "reportgrid.v1.ReportService" in database.get_services()
        service = DescriptorPool(database).FindServiceByName("reportgrid.v1.ReportService")
        assert {m.name for m in service.methods} == {
            "SubmitReport",
            "GetReport",
            "WatchReport",
            "ListReports",
            "CancelReport",
            "DeleteReport",
            "DownloadReport",
            "ListReportKinds",
            "CreateSchedule",
            "GetSchedule",
            "ListSchedules",
            "UpdateSchedule",
            "PauseSchedule",
            "ResumeSchedule",
            "DeleteSchedule",
        }


def test_schedule_commands_pass_the_edge_roles_iam(dev: DevRegion) -> None:
    # The edge runs under its task role here (IAM enforced from the template): each
    # schedule RPC's DynamoDB calls, transactions included, must be allowed by it.
    created = dev.cli("schedule", "create", "--kind", "synthetic", "--rate", "1 day", "--json")
    assert created.returncode == 0, created.stderr
    sid = json.loads(created.stdout)["schedule_id"]
    for argv in (
        ("schedule", "get", sid),
        ("schedule", "list"),
        ("schedule", "update", sid, "--description", "iam"),
        ("schedule", "pause", sid),
        ("schedule", "resume", sid),
        ("schedule", "delete", sid),
    ):
        done = dev.cli(*argv)
        assert done.returncode == 0, (argv, done.stderr)


def test_ctrl_c_stops_every_child_process(dev: DevRegion) -> None:
    # Runs last in this module: it ends the region.
    assert dev.descendants, "the region should have child processes"
    dev.process.send_signal(signal.SIGINT)
    assert dev.process.wait(40) == 0
    gone, alive = psutil.wait_procs(dev.descendants, timeout=5)
    assert not alive, f"orphans: {[(p.pid, p.name()) for p in alive]}"
    assert len(gone) == len(dev.descendants)
