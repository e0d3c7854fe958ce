"""The SDK's schedule methods (both clients) and `reportgrid schedule ...` against the real
edge. The blocking client and the CLI run in a thread: the edge serves on this event loop."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner, Result

from reportgrid import errors
from reportgrid.cli.commands import app
from reportgrid.cli.exit_codes import Exit
from reportgrid.client import AsyncReportClient, ReportClient
from reportgrid.local.bootstrap import RegionResources
from reportgrid.resources import ENV
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.edge.conftest import TENANT, Edge
from tests.integration.edge.test_schedules import due_of


async def test_the_async_client_drives_a_schedule_through_its_life(
    edge: Edge, aws: RegionResources
) -> None:
    async with AsyncReportClient(edge.target, api_key=edge.key) as client:
        created = await client.create_schedule(
            "synthetic",
            {"output_rows": 10},
            cron="0 8 * * MON",
            time_zone="Europe/Berlin",
            labels={"team": "ops"},
            notify_url="https://hooks.example.com/reportgrid",
            overlap="allow",
            description="weekly",
        )
        sid = created.schedule_id
        assert created.overlap_policy == pb.OVERLAP_POLICY_ALLOW
        assert created.template.notify.url == "https://hooks.example.com/reportgrid"
        assert not created.template.idempotency_key  # each fire gets its own
        other = await client.create_schedule("synthetic", {"output_rows": 1}, rate="5 minutes")
        assert other.expression == "rate(5 minutes)"
        listed = [s.schedule_id async for s in client.list_schedules(page_size=1)]
        assert listed == [other.schedule_id, sid]

        updated = await client.update_schedule(sid, rate="1 hour", expected_version=1)
        assert updated.expression == "rate(1 hour)"
        assert updated.version == 2
        assert updated.description == "weekly"
        cleared = await client.update_schedule(sid, clear=["description"])
        assert cleared.description == ""
        with pytest.raises(errors.FailedPrecondition) as stale:
            await client.pause_schedule(sid, expected_version=1)
        assert stale.value.subject == "version"
        assert stale.value.type == "VERSION_MISMATCH"
        paused = await client.pause_schedule(sid)
        assert paused.paused
        assert due_of(aws, TENANT, sid) is None
        resumed = await client.resume_schedule(sid)
        assert not resumed.paused
        assert due_of(aws, TENANT, sid) is not None
        assert (await client.delete_schedule(sid)).schedule_id == sid
        with pytest.raises(errors.NotFound):
            await client.get_schedule(sid)

        with pytest.raises(errors.InvalidArgument) as bad:
            await client.create_schedule("synthetic", {"output_rows": 1}, cron="0 25 * * *")
        assert [v.field for v in bad.value.violations] == ["schedule.expression"]
        # Refused before anything is sent.
        with pytest.raises(errors.InvalidArgument, match="cron or rate"):
            await client.create_schedule("synthetic", cron="* * * * *", rate="5 minutes")
        with pytest.raises(errors.InvalidArgument, match="update_mask"):
            await client.update_schedule(other.schedule_id)


def _blocking_round_trip(target: str, key: str) -> list[str]:
    with ReportClient(target, api_key=key) as client:
        created = client.create_schedule("synthetic", {"output_rows": 1}, rate="1 day")
        got = client.get_schedule(created.schedule_id)
        assert got == created
        ids = [s.schedule_id for s in client.list_schedules()]
        client.pause_schedule(created.schedule_id)
        client.resume_schedule(created.schedule_id)
        client.update_schedule(created.schedule_id, time_zone="Asia/Tokyo")
        client.delete_schedule(created.schedule_id)
        return ids


async def test_the_blocking_client_has_the_same_methods(edge: Edge) -> None:
    ids = await asyncio.to_thread(_blocking_round_trip, edge.target, edge.key)
    assert len(ids) == 1


async def test_the_schedule_commands(edge: Edge, aws: RegionResources) -> None:
    cli = CliRunner(env={ENV.CLIENT_ENDPOINT: edge.target, ENV.CLIENT_API_KEY: edge.key})

    async def run(*argv: str) -> Result:
        return await asyncio.to_thread(cli.invoke, app, ["schedule", *argv])

    created = await run(
        "create",
        "--kind",
        "synthetic",
        "--cron",
        "0 8 * * MON",
        "--tz",
        "Europe/Berlin",
        "--param",
        "output_rows=10",
        "--label",
        "team=ops",
        "--notify",
        "https://hooks.example.com/reportgrid",
        "--overlap",
        "skip",
        "--json",
    )
    assert created.exit_code == Exit.OK, created.output
    schedule = json.loads(created.stdout)
    sid = schedule["schedule_id"]
    assert schedule["template"]["labels"] == {"team": "ops"}
    assert schedule["time_zone"] == "Europe/Berlin"
    rate = await run("create", "--kind", "synthetic", "--rate", "5 minutes")
    assert rate.exit_code == Exit.OK, rate.output
    rate_id = rate.stdout.strip()
    assert rate_id.startswith("sch-")

    listed = await run("list", "--json")
    assert [s["schedule_id"] for s in json.loads(listed.stdout)] == [rate_id, sid]
    table = await run("list")
    assert sid in table.stdout
    assert "0 8 * * MON" in table.stdout
    shown = await run("get", sid)
    assert "ACTIVE" in shown.stdout
    assert "Europe/Berlin" in shown.stdout
    updated = await run("update", sid, "--rate", "1 hour", "--expected-version", "1", "--json")
    assert json.loads(updated.stdout)["expression"] == "rate(1 hour)"
    stale = await run("pause", sid, "--expected-version", "1")
    assert stale.exit_code == Exit.PRECONDITION
    assert "schedule get" in stale.stderr
    paused = await run("pause", sid)
    assert "PAUSED" in paused.stdout
    assert due_of(aws, TENANT, sid) is None
    resumed = await run("resume", sid, "--json")
    assert json.loads(resumed.stdout).get("paused") is None  # false: left out of the JSON
    deleted = await run("delete", sid)
    assert deleted.stdout.strip() == f"deleted {sid}"

    # Every failure: one line naming the problem, and the exit code of its kind.
    for argv, code, words in (
        (("get", sid), Exit.NOT_FOUND, "schedule list"),
        (("delete", sid), Exit.NOT_FOUND, "NOT_FOUND"),
        (("get", "not-an-id"), Exit.USAGE, "schedule_id"),
        (("create", "--kind", "synthetic", "--cron", "0 8 * *"), Exit.USAGE, "5 fields"),
        (("create", "--kind", "synthetic", "--rate", "5 weeks"), Exit.USAGE, "schedule.expression"),
        (
            ("create", "--kind", "synthetic", "--rate", "1 day", "--tz", "Mars/Base"),
            Exit.USAGE,
            "schedule.time_zone",
        ),
        (
            ("create", "--kind", "synthetic", "--rate", "1 day", "--notify", "http://x.io/h"),
            Exit.USAGE,
            "schedule.template.notify.url",
        ),
        (("create", "--kind", "nope", "--rate", "1 day"), Exit.USAGE, "schedule.template.kind"),
        (("create", "--kind", "synthetic"), Exit.USAGE, "--cron or --rate"),
        (
            ("create", "--kind", "synthetic", "--rate", "1 day", "--overlap", "sometimes"),
            Exit.USAGE,
            "skip, allow",
        ),
        (
            ("create", "--kind", "synthetic", "--rate", "1 day", "--start", "monday"),
            Exit.USAGE,
            "ISO 8601",
        ),
        (("update", rate_id), Exit.USAGE, "update_mask"),
    ):
        result = await run(*argv)
        assert result.exit_code == code, (argv, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (argv, result.stderr)
        assert words in lines[0], (argv, lines)
        assert "Traceback" not in result.output
