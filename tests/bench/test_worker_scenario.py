"""The worker scenarios' bookkeeping (bench/worker.py, bench/worker_child.py): AWS calls
are counted per API call on the worker's own clients, and a run that lost a report, ran
one twice or paid more than 3 calls per light report is a problem of the run."""

from __future__ import annotations

import boto3
from botocore.stub import Stubber

from bench import worker
from bench.worker_child import Calls


def test_calls_are_counted_per_api_call_on_the_attached_client() -> None:
    ddb = boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    other = boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    calls = Calls()
    calls.attach(ddb)
    with Stubber(ddb) as stub, Stubber(other) as other_stub:
        stub.add_response("put_item", {}, {"TableName": "t", "Item": {"pk": {"S": "a"}}})
        stub.add_response("put_item", {}, {"TableName": "t", "Item": {"pk": {"S": "b"}}})
        other_stub.add_response("get_item", {}, {"TableName": "t", "Key": {"pk": {"S": "a"}}})
        ddb.put_item(TableName="t", Item={"pk": {"S": "a"}})
        ddb.put_item(TableName="t", Item={"pk": {"S": "b"}})
        other.get_item(TableName="t", Key={"pk": {"S": "a"}})
    assert dict(calls.counts) == {"PutItem": 2}


def _summary(counted: dict[str, int], calls: dict[str, int]) -> list[str]:
    light = worker.worker_scenarios(1.0)[0]
    done = {"reports": 100, "wall_s": 2.0, "calls": calls}
    result = worker.summarize(
        light,
        done,
        counted=counted,
        worker_cpu=0.5,
        own_cpu=0.3,
        moto_cpu=0.4,
        null_us=250.0,
        started=0.0,
    )
    assert result["worker_cpu_us_per_report"] == 5000.0
    assert result["worker_to_null_ratio"] == 20.0
    assert (result["worker_process_cpu_us_per_report"], result["pool_cpu_us_per_report"]) == (
        3000.0,
        2000.0,
    )
    problems: list[str] = result["problems"]
    return problems


def test_a_clean_light_run_has_no_problem() -> None:
    assert _summary({"SUCCEEDED": 100}, {"PutItem": 200, "BatchGetItem": 10}) == []


def test_lost_duplicated_or_costly_runs_are_problems() -> None:
    problems = _summary({"SUCCEEDED": 98, "LOST": 1, "RUN_MORE_THAN_ONCE": 1}, {"PutItem": 301})
    assert len(problems) == 2
    assert "not every report SUCCEEDED exactly once" in problems[0]
    assert "3.01 AWS calls per light report" in problems[1]
