"""The synthetic canary against a real local region: the edge as a process on a loopback
port (`python -m grpc_edge`, as tests/faults starts it), the stream worker's real handler
under the local Kinesis runner, the moto server and a real redis-server. The canary's key
is provisioned the way an operator does it (cdk/canary_key.py) into the secret the data
stack creates, and the handler reads it from there.

Each run is checked by what it emits (its EMF document on stdout, as Lambda would ship it)
and what it returns; a failing run must emit a failure and return normally, without a
traceback anywhere."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cdk.canary_key import CANARY_KEY_SECRET_NAME, CANARY_TENANT, rotate_canary_key
from functions.canary import handler as canary
from functions.canary import settings as canary_settings
from reportgrid import apikeys, resources
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.local.servers import free_port
from tests.faults.conftest import ROOT, EdgeProcess, edge_process, wait_for_log  # noqa: F401

DEADLINE_SECONDS = 30
# What the data stack's secret holds before a key is provisioned (generated, no "rg_").
PLACEHOLDER = "PlaceholderNotAnApiKey0123456789"


@dataclass
class LambdaContext:
    function_name: str = "reportgrid-canary"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:111111111111:function:canary"
    aws_request_id: str = "req-1"
    log_group_name: str = "/aws/lambda/canary"
    log_stream_name: str = "canary"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@dataclass
class Run:
    result: dict[str, Any]
    metrics: dict[str, list[float]]  # metric name -> values, from the EMF documents
    output: str  # everything written to stdout and stderr, and every log record
    records: list[logging.LogRecord]  # the canary's log records

    @property
    def success(self) -> list[float]:
        return self.metrics.get(canary.SUCCESS, [])


@pytest.fixture
def secret_arn(aws: RegionResources) -> str:
    """The canary's secret as the data stack leaves it: created, no key in it yet."""
    secrets = client("secretsmanager", aws.region, aws.endpoint_url)
    return str(secrets.create_secret(Name=CANARY_KEY_SECRET_NAME, SecretString=PLACEHOLDER)["ARN"])


def provision(aws: RegionResources) -> str:
    """`python -m cdk.canary_key`: a key for the canary tenant, in the table and the secret."""
    return rotate_canary_key(
        dynamodb=client("dynamodb", aws.region, aws.endpoint_url),
        secrets=client("secretsmanager", aws.region, aws.endpoint_url),
    )


@pytest.fixture
def run_canary(
    aws: RegionResources,
    secret_arn: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> Iterator[Callable[..., Run]]:
    """Run the handler once against `endpoint`, as the Lambda runtime would (its
    environment as the stack sets it, TLS off on loopback)."""

    def run(endpoint: str, **env: str) -> Run:
        variables = {
            canary_settings.ENDPOINT: endpoint,
            canary_settings.TLS: "false",
            canary_settings.API_KEY_SECRET_ARN: secret_arn,
            canary_settings.REGION: aws.region,
            canary_settings.DEADLINE_SECONDS: str(DEADLINE_SECONDS),
            "AWS_ENDPOINT_URL": aws.endpoint_url,  # botocore's own: the moto server
            "AWS_DEFAULT_REGION": aws.region,
        } | env
        for name, value in variables.items():
            if value:
                monkeypatch.setenv(name, value)
            else:
                monkeypatch.delenv(name, raising=False)
        capfd.readouterr()
        caplog.clear()
        result = canary.handler({"source": "aws.events"}, LambdaContext())  # type: ignore[arg-type]
        captured = capfd.readouterr()
        records = [r for r in caplog.records if r.name == canary.SERVICE]
        # The Powertools logger writes to the stdout it found at import; its records are
        # what it wrote (a traceback would be a record's exc_info, or text on stderr).
        text = captured.out + captured.err + caplog.text
        text += "".join(
            logging.Formatter().formatException(r.exc_info) for r in records if r.exc_info
        )
        return Run(result, _emf(captured.out), text, records)

    canary.configure(None)
    yield run
    canary.configure(None)


def _emf(out: str) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        document = json.loads(line)
        if "_aws" not in document:
            continue
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == canary.NAMESPACE
            assert directive["Dimensions"] == [["service"]]
            assert document["service"] == canary.SERVICE
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                found.setdefault(metric["Name"], []).extend(
                    value if isinstance(value, list) else [value]
                )
    return found


@pytest.fixture
def local_region(
    edge_process: Callable[..., EdgeProcess],  # noqa: F811 -- the fixture imported above
    region_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[EdgeProcess]:
    """The edge and the stream worker (the real handler under the local Kinesis runner)."""
    edge = edge_process()
    log = tmp_path / "runner.log"
    with log.open("wb") as out:
        runner = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reportgrid.local.kinesis_runner",
                "--state-dir",
                str(tmp_path / "runner-state"),
            ],
            cwd=ROOT,
            env={**os.environ, **region_env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_log(log, r"polling \d+ shard", runner, timeout=60)
        yield edge
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGTERM)
            try:
                runner.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(runner.pid, signal.SIGKILL)
                runner.wait(10)


def test_the_canary_runs_a_report_through_the_local_region(
    aws: RegionResources, local_region: EdgeProcess, run_canary: Callable[..., Run]
) -> None:
    # Given the canary tenant's key, provisioned as an operator does
    provision(aws)
    # When the schedule invokes the canary
    run = run_canary(local_region.target)
    # Then it submitted, watched and got a report this region ran, with the kind's values
    assert run.result["ok"] is True, run.result
    assert run.result["stage"] == "done"
    assert run.result["ran_in"] == aws.region
    assert run.success == [1]
    (latency,) = run.metrics[canary.LATENCY]
    assert 0 < latency < DEADLINE_SECONDS * 1000
    assert "Traceback" not in run.output
    # And the report is the canary tenant's
    key = client("secretsmanager", aws.region, aws.endpoint_url).get_secret_value(
        SecretId=CANARY_KEY_SECRET_NAME
    )["SecretString"]
    assert _key_item(aws, key)["tenant"] == {"S": CANARY_TENANT}


def test_a_report_another_region_ran_is_a_failure_of_this_one(
    aws: RegionResources, local_region: EdgeProcess, run_canary: Callable[..., Run]
) -> None:
    # Given a canary whose home is another region than the one that runs its reports (as
    # when the peer's standby took a region's tasks over)
    provision(aws)
    run = run_canary(local_region.target, **{canary_settings.REGION: "eu-west-1"})
    # Then the report came back fine, and still the probe failed
    assert run.result["ok"] is False
    assert run.result["stage"] == "verify"
    assert run.result["reason"] == f"ran in {aws.region}, not eu-west-1"
    assert run.success == [0]


def test_an_endpoint_that_is_down_is_a_failure_metric_not_a_crash(
    aws: RegionResources, run_canary: Callable[..., Run]
) -> None:
    # Given a provisioned key, and nothing listening where the canary calls
    provision(aws)
    started = time.monotonic()
    run = run_canary(f"127.0.0.1:{free_port()}")
    took = time.monotonic() - started
    # Then the run returns, says where it stopped, and emits a failure (no latency)
    assert run.result["ok"] is False
    assert run.result["stage"] == "submit"
    assert run.result["reason"].startswith("Unavailable"), run.result
    assert run.success == [0]
    assert canary.LATENCY not in run.metrics
    assert "Traceback" not in run.output
    (logged,) = run.records
    assert (logged.levelname, logged.getMessage(), logged.exc_info) == (
        "ERROR",
        "canary failed",
        None,
    )
    assert took < DEADLINE_SECONDS


def test_a_rejected_key_fails_and_the_next_run_reads_the_secret_again(
    aws: RegionResources, secret_arn: str, local_region: EdgeProcess, run_canary: Callable[..., Run]
) -> None:
    # Given a well-formed key that the table does not know
    secrets = client("secretsmanager", aws.region, aws.endpoint_url)
    secrets.put_secret_value(SecretId=secret_arn, SecretString=apikeys.generate_key())
    refused = run_canary(local_region.target)
    assert refused.result["ok"] is False
    assert refused.result["reason"].startswith("Unauthenticated"), refused.result
    assert refused.success == [0]
    # When the key is rotated (a new key stored, the secret pointed at it)
    provision(aws)
    # Then the next run, in the same execution environment, uses the new key
    accepted = run_canary(local_region.target)
    assert accepted.result["ok"] is True, accepted.result
    assert accepted.success == [1]
    assert "Traceback" not in refused.output + accepted.output


def test_no_key_yet_is_a_failure_that_says_so(
    secret_arn: str, run_canary: Callable[..., Run]
) -> None:
    # The secret as the data stack created it: the canary says what to do
    run = run_canary(f"127.0.0.1:{free_port()}")
    assert run.result["ok"] is False
    assert run.result["stage"] == "configure"
    assert "holds no API key yet" in run.result["reason"]
    assert run.success == [0]
    assert "Traceback" not in run.output


def test_a_missing_setting_is_a_failure_naming_the_variable(
    run_canary: Callable[..., Run],
) -> None:
    run = run_canary("", **{canary_settings.REGION: ""})
    assert run.result["ok"] is False
    assert run.result["stage"] == "configure"
    assert canary_settings.ENDPOINT in run.result["reason"]
    assert canary_settings.REGION in run.result["reason"]
    assert run.success == [0]
    assert "Traceback" not in run.output


def test_rotating_the_key_revokes_the_one_it_replaces(
    aws: RegionResources, secret_arn: str
) -> None:
    first = provision(aws)
    second = provision(aws)
    assert _key_item(aws, first)["revoked"] == {"BOOL": True}
    assert _key_item(aws, second)["revoked"] == {"BOOL": False}
    secrets = client("secretsmanager", aws.region, aws.endpoint_url)
    assert secrets.get_secret_value(SecretId=secret_arn)["SecretString"] == second


def _key_item(aws: RegionResources, key: str) -> dict[str, Any]:
    found = client("dynamodb", aws.region, aws.endpoint_url).get_item(
        TableName=aws.table_name,
        Key={k: {"S": v} for k, v in resources.api_key_key(apikeys.key_hash(key)).items()},
    )
    item: dict[str, Any] = found["Item"]
    return item
