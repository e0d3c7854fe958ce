"""`reportgrid trace`: log lines as a report's steps, the local region's log layout, the
Logs Insights path against the moto server's CloudWatch Logs (StartQuery/GetQueryResults;
moto ignores `filter`, so the rows are checked here too), and the command's output."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from reportgrid.cli import log_queries, trace
from reportgrid.cli.commands import app
from reportgrid.cli.exit_codes import Exit
from reportgrid.local.servers import MotoServer

CREATED_MS = 1_796_177_697_000  # 2026-12-02 02:14:57 UTC


def _report_id(created_ms: int = CREATED_MS, keyed: bool = False) -> str:
    body = bytes([1, 1 if keyed else 0, 0, 1]) + created_ms.to_bytes(6, "big") + b"\x07" * 10
    raw = body + b"\x00" * 12
    return "rpt_" + base64.b32encode(raw).decode().rstrip("=").lower()


RID = _report_id()
NO_API_KEY = {"REPORTGRID_API_KEY": ""}  # no record steps: the logs only
OTHER = _report_id(CREATED_MS + 1)


def _powertools(ms: int, message: str, **extra: object) -> str:
    return json.dumps({"level": "INFO", "message": message, "ts": ms, **extra})


def test_a_json_line_gives_its_fields_and_a_plain_line_its_time_and_text() -> None:
    step = trace.parse_line(
        _powertools(CREATED_MS, "accepted", report_id=RID, component="edge", region="eu-west-1"),
        RID,
        component="edge.log",
        region="local",
        source="edge.log",
    )
    assert step is not None
    assert (step.at_ms, step.component, step.region, step.event) == (
        CREATED_MS,
        "edge",
        "eu-west-1",
        "accepted",
    )
    # Powertools' own timestamp, and `event` over `message` when a line has both.
    step = trace.parse_line(
        json.dumps(
            {
                "timestamp": "2026-12-02 02:14:57,250+0000",
                "message": "x",
                "event": "terminal",
                "service": "reportgrid-stream-worker",
                "report_id": RID,
            }
        ),
        RID,
        component="",
        region="us-east-1",
        source="f.log",
    )
    assert step is not None
    assert (step.at_ms, step.event, step.component) == (
        CREATED_MS + 250,
        "terminal",
        "reportgrid-stream-worker",
    )
    plain = trace.parse_line(
        f"2026-12-02 02:14:58,500 INFO functions.standby taking over report {RID} from eu-west-1",
        RID,
        component="standby-b",
        region="us-east-1",
        source="standby-b.log",
    )
    assert plain is not None
    assert plain.event == f"taking over report {RID} from eu-west-1"
    assert plain.component == "standby-b"


def test_lines_of_other_reports_and_metrics_are_not_steps() -> None:
    emf = json.dumps({"_aws": {"Timestamp": CREATED_MS, "CloudWatchMetrics": []}, "id": RID})
    for line in (_powertools(CREATED_MS, "x", report_id=OTHER), emf, "no time " + RID):
        assert trace.parse_line(line, RID, component="c", region="r", source="s") is None
    # Not even when CloudWatch gives the event's time: a metric document is no step.
    assert trace.parse_line(emf, RID, component="c", region="r", source="s", at_ms=1) is None


def _logs(root: Path) -> Path:
    logs = root / "logs"
    (logs / "functions" / "eu-west-1").mkdir(parents=True)
    (logs / "edge-a.log").write_text(
        _powertools(CREATED_MS, "accepted", report_id=RID)
        + "\n"
        + _powertools(CREATED_MS + 5, "accepted", report_id=OTHER)
        + "\n"
        + _powertools(CREATED_MS + 60, "GetReport answered", report_id=RID)
        + "\n"
    )
    (logs / "functions" / "eu-west-1" / "reportgrid-stream-worker.log").write_text(
        _powertools(CREATED_MS + 40, "forwarded", report_id=RID, service="stream") + "\n"
    )
    (logs / "standby-b.log").write_text(
        f"2026-12-02 02:15:40,000 INFO functions.standby taking over report {RID} from eu-west-1\n"
    )
    (logs / "moto.log").write_text(f"POST / {RID}\n")
    return logs


def test_local_logs_give_the_report_life_in_order_with_durations(tmp_path: Path) -> None:
    logs = _logs(tmp_path)
    rows = trace.timeline(trace.local_steps(logs, RID, ["eu-west-1", "us-east-1"]))
    # In time order across files, each with the time since the step before.
    assert [(r["component"], r["region"], r["event"]) for r in rows] == [
        ("edge-a", "eu-west-1", "accepted"),
        ("reportgrid-stream-worker", "eu-west-1", "forwarded"),  # the file over `service`
        ("edge-a", "eu-west-1", "GetReport answered"),
        ("standby-b", "us-east-1", f"taking over report {RID} from eu-west-1"),
    ]
    assert [r["delta_ms"] for r in rows[:3]] == [0, 40, 20]
    assert rows[3]["since_start_ms"] == rows[3]["at_ms"] - CREATED_MS
    assert all(r["source"] != "moto.log" for r in rows)


def test_the_id_bounds_the_search_and_a_keyed_id_falls_back_to_since() -> None:
    now = CREATED_MS + 3_600_000
    assert trace.created_ms(RID) == CREATED_MS
    assert trace.query_window(RID, now, 24) == ((CREATED_MS - 300_000) // 1000, now // 1000 + 1)
    keyed = _report_id(0, keyed=True)
    assert trace.created_ms(keyed) is None
    assert trace.query_window(keyed, now, 2)[0] == (now - 7_200_000) // 1000


def test_the_query_names_the_report_and_refuses_anything_else() -> None:
    query = log_queries.report_life(RID)
    assert f'filter @message like "{RID}"' in query
    assert "sort @timestamp asc" in query
    with pytest.raises(ValueError, match="not a report id"):
        log_queries.report_life('rpt_x" or 1=1')


@pytest.fixture
def cloudwatch(moto_server: MotoServer) -> MotoServer:
    moto_server.reset()
    for region, group, lines in (
        (
            "eu-west-1",
            "Reportgrid-eu-west-1-EdgeLogsA4EA23EB-abc",
            [(CREATED_MS, _powertools(CREATED_MS, "accepted", report_id=RID))],
        ),
        (
            "us-east-1",
            "Reportgrid-us-east-1-StandbyWorkerLogsEC67C3BD-def",
            [
                (CREATED_MS + 30_000, f"standby taking over report {RID} from eu-west-1"),
                (CREATED_MS + 31_000, "standby polling"),  # names no report
            ],
        ),
        ("us-east-1", "Reportgrid-us-east-1-NetworkFlowLogs-x", [(CREATED_MS, RID)]),
        ("us-east-1", "Someone-else", [(CREATED_MS, RID)]),
    ):
        logs = boto3.client("logs", region_name=region, endpoint_url=moto_server.endpoint_url)
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="s")
        logs.put_log_events(
            logGroupName=group,
            logStreamName="s",
            logEvents=[{"timestamp": ms, "message": text} for ms, text in lines],
        )
    return moto_server


def test_logs_insights_in_every_region_give_one_timeline(cloudwatch: MotoServer) -> None:
    clients = trace.boto3_clients(cloudwatch.endpoint_url)
    steps = trace.cloud_steps(RID, ["eu-west-1", "us-east-1"], clients=clients, poll_seconds=0.05)
    rows = trace.timeline(steps)
    assert [(r["region"], r["component"], r["delta_ms"]) for r in rows] == [
        ("eu-west-1", "edge", 0),
        ("us-east-1", "standby", 30_000),
    ]
    assert rows[1]["event"] == f"standby taking over report {RID} from eu-west-1"
    assert rows[1]["source"] == "Reportgrid-us-east-1-StandbyWorkerLogsEC67C3BD-def"


def test_the_command_prints_json_and_says_when_nothing_names_the_report(tmp_path: Path) -> None:
    _logs(tmp_path)
    runner = CliRunner()
    result = runner.invoke(
        app, ["trace", RID, "--state-dir", str(tmp_path), "--json"], env=NO_API_KEY
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["report_id"] == RID
    assert body["steps"][0]["component"] == "edge-a"
    missing = runner.invoke(
        app, ["trace", _report_id(1), "--state-dir", str(tmp_path)], env=NO_API_KEY
    )
    assert missing.exit_code == Exit.NOT_FOUND
    bad = runner.invoke(app, ["trace", "nope", "--state-dir", str(tmp_path)], env=NO_API_KEY)
    assert bad.exit_code == Exit.USAGE


def test_a_workers_step_line_gives_its_text_and_fields_and_the_trace_id() -> None:
    # The line reportgrid/tracing.py log_step writes through a plain-text logger
    root = "1-5759e988-bd862e3fe1be46a994272793"
    fields = {"event": "takeover", "report_id": RID, "tenant": "acme", "trace_id": root}
    line = (
        "2026-12-02 02:14:58,500 INFO functions.standby.worker "
        f"taking over report {RID} from eu-west-1 {json.dumps(fields)}"
    )
    step = trace.parse_line(line, RID, component="standby-b", region="us-east-1", source="s")
    assert step is not None
    assert step.event == f"taking over report {RID} from eu-west-1"
    assert step.fields == fields
    assert trace.trace_ids([step]) == [root]
    # Braces that are not a JSON object stay text
    odd = trace.parse_line(
        f"2026-12-02 02:14:58,500 INFO x report {RID} {{not json}}",
        RID,
        component="c",
        region="r",
        source="s",
    )
    assert odd is not None
    assert odd.event == f"report {RID} {{not json}}"
    assert odd.fields == {}
