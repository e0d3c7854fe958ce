"""Completion events in the template (cdk/constructs/events.py): the bus, the stream
mapping's filter, retries and on-failure destination, the publisher's grants, and the
tenant forward rule's pattern and role."""

from __future__ import annotations

import json
from typing import Any, cast

import aws_cdk as cdk
from aws_cdk.assertions import Match, Template
from moto.events.models import EventPattern

from cdk.constructs.events import HANDLER, MAX_RETRIES, TenantEventForward
from reportgrid import events, records
from reportgrid import resources as r
from reportgrid.records import ReportRecord, ResultInfo
from reportgrid.states import State
from tests.infra.conftest import ACCOUNT, allowed, function_by_handler, role_statements


def _mapping(template: Template) -> dict[str, Any]:
    logical_id, _ = function_by_handler(template, HANDLER)
    (found,) = [
        m["Properties"]
        for m in template.find_resources("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": logical_id}
    ]
    return dict(found)


def test_each_region_has_the_bus(eu: Template, us: Template) -> None:
    for template in (eu, us):
        template.has_resource_properties("AWS::Events::EventBus", {"Name": r.EVENT_BUS_NAME})


def test_the_mapping_reads_the_table_stream_with_retries_and_a_destination(eu: Template) -> None:
    mapping = _mapping(eu)
    assert "Table.LatestStreamArn" in json.dumps(mapping["EventSourceArn"])
    # A first deploy announces no report that ended before it (no 24 h back-fill).
    assert mapping["StartingPosition"] == "LATEST"
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == MAX_RETRIES
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "FailureQueue" in json.dumps(mapping["DestinationConfig"])
    eu.has_resource_properties("AWS::SQS::Queue", {"QueueName": r.EVENTS_FAILURE_QUEUE_NAME})
    eu.has_resource_properties(
        "AWS::CloudWatch::Alarm", {"AlarmDescription": Match.string_like_regexp("dropped")}
    )


def _stream_record(new: ReportRecord | None, old: ReportRecord | None) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, record in (("NewImage", new), ("OldImage", old)):
        if record is not None:
            data[name] = {k: v for k, v in records.to_item(record).items() if "B" not in v}
    return {"dynamodb": data}


def _report(state: State, **changes: Any) -> ReportRecord:
    return ReportRecord("r1", "acme", "summary", state, 1_700_000_000_000, **changes)


def test_the_filter_passes_only_terminal_transitions_written_here(eu: Template) -> None:
    patterns = [EventPattern.load(f["Pattern"]) for f in _mapping(eu)["FilterCriteria"]["Filters"]]

    def passes(new: ReportRecord | None, old: ReportRecord | None) -> bool:
        event = cast(Any, _stream_record(new, old))  # moto types it as its own message
        return any(p.matches_event(event) for p in patterns)

    here, there = "eu-west-1", "us-east-1"
    running = _report(State.RUNNING, region=here, written_region=here)
    done = _report(State.SUCCEEDED, region=here, written_region=here)
    assert passes(done, running)
    assert passes(done, None)  # a terminal write from no item (cancelled before start)
    assert passes(_report(State.FAILED, region=here), running)  # unstamped: its runner's
    assert not passes(done, done)  # a later write to a terminal item
    assert not passes(running, None)
    assert not passes(None, done)  # a removal
    # Replicated here from the other region (a takeover there), or cancelled there.
    assert not passes(_report(State.SUCCEEDED, region=here, written_region=there), running)
    assert not passes(_report(State.CANCELLED, written_region=there), None)


def test_the_publisher_puts_on_its_bus_only_and_reads_only_the_table_streams(
    eu: Template,
) -> None:
    _logical_id, function = function_by_handler(eu, HANDLER)
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = role_statements(eu, role)
    (bus,) = allowed(statements, "events:PutEvents")
    assert "Bus" in bus
    streams = allowed(statements, "dynamodb:GetRecords")
    assert streams
    assert all(f"table/{r.TABLE_NAME}/stream/*" in s for s in streams)
    assert not allowed(statements, "dynamodb:PutItem")
    env = function["Properties"]["Environment"]["Variables"]
    assert r.ENV.EVENT_BUS_NAME in env


def test_a_tenant_forward_matches_only_that_tenant_and_its_role_only_that_bus() -> None:
    stack = cdk.Stack(env=cdk.Environment(account=ACCOUNT, region="eu-west-1"))
    bus = cdk.aws_events.EventBus(stack, "Bus", event_bus_name=r.EVENT_BUS_NAME)
    target = "arn:aws:events:eu-west-1:222222222222:event-bus/from-reportgrid"
    TenantEventForward(stack, "Acme", bus=bus, tenant="acme", target_bus_arn=target)
    template = Template.from_stack(stack)
    (rule,) = template.find_resources("AWS::Events::Rule").values()
    pattern = EventPattern.load(json.dumps(rule["Properties"]["EventPattern"]))
    acme = events.put_entry(_report(State.SUCCEEDED), region="eu-west-1", bus_name="b")
    other = events.put_entry(
        _report(State.SUCCEEDED).with_(tenant="acme2"), region="eu-west-1", bus_name="b"
    )

    def as_event(entry: dict[str, Any]) -> Any:
        return {"source": entry["Source"], "detail": json.loads(entry["Detail"])}

    assert pattern.matches_event(as_event(acme))
    assert not pattern.matches_event(as_event(other))
    (target_spec,) = rule["Properties"]["Targets"]
    assert target_spec["Arn"] == target
    assert "RoleArn" in target_spec
    (policy,) = template.find_resources("AWS::IAM::Policy").values()
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {"Action": "events:PutEvents", "Effect": "Allow", "Resource": target}
    ]


def test_the_detail_is_the_contract_and_stays_small() -> None:
    record = _report(
        State.SUCCEEDED,
        started_ms=1_700_000_001_000,
        ended_ms=1_700_000_002_345,
        attempts=1,
        home_region="eu-west-1",
        result=ResultInfo(10, "text/csv", "ab" * 32, 2, 1),
        error_message="x" * 100_000,
    )
    detail = events.detail(record, region="eu-west-1")
    assert set(detail) == {
        "schema_version", "event_id", "report_id", "tenant", "kind", "state", "create_time",
        "start_time", "end_time", "region", "home_region", "attempts", "result", "error",
        "labels", "notify_url",
    }  # fmt: skip
    assert detail["event_id"] == events.event_id("r1", State.SUCCEEDED)
    assert len(detail["event_id"]) == 32
    assert detail["end_time"] == "2023-11-14T22:13:22.345Z"
    assert detail["result"]["sha256"] == "ab" * 32
    entry = events.put_entry(record, region="eu-west-1", bus_name=r.EVENT_BUS_NAME)
    assert events.entry_size(entry) < 8 * 1024
