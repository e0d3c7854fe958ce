"""The IAM hook on real clients against the moto server, with the REAL synthesized template:
an allowed call reaches moto; a denied one raises AWS's error and never reaches it (moto
would have answered otherwise, or left a trace). boto3 and aioboto3 alike, in-process
(`enforced`) and as the entry point (`python -m reportgrid.local.iam.enforce`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aioboto3
import boto3
import pytest
from botocore.exceptions import ClientError

from reportgrid import resources as r
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.local.iam.enforce import build_enforcer, enforcing
from reportgrid.local.iam.hook import enforced
from tests.unit.devstack.local_synth import REPO_ROOT

STREAM_WORKER = "functions.stream_worker.handler.handler"
ITEM = {"pk": {"S": "report#iam-1"}}


def fresh(service: str, aws: RegionResources, **credentials: str) -> Any:
    """A client of a session of its own (created while the hook is installed)."""
    return boto3.session.Session().client(  # type: ignore[call-overload]
        service, region_name=aws.region, endpoint_url=aws.endpoint_url, **credentials
    )


def error(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    found = err.value.response["Error"]
    return found["Code"], found["Message"]


def test_an_allowed_call_reaches_moto_and_a_denied_one_does_not(
    aws: RegionResources, assembly: Path
) -> None:
    enforcer = build_enforcer(assembly, region=aws.region, function=STREAM_WORKER)
    with enforced(enforcer):
        ddb = fresh("dynamodb", aws)
        sqs = fresh("sqs", aws)
        ddb.put_item(TableName=r.TABLE_NAME, Item=ITEM)
        # A table that does not exist: had the call reached moto, it would say so
        with pytest.raises(ClientError) as denied:
            ddb.put_item(TableName="no-such-table", Item=ITEM)
        with pytest.raises(ClientError) as refused:
            sqs.send_message(QueueUrl=aws.standby_queue_url, MessageBody="not mine")
    code, message = error(denied)
    assert code == "AccessDeniedException"
    assert "is not authorized to perform: dynamodb:PutItem" in message
    assert "table/no-such-table because no identity-based policy allows" in message
    assert error(refused)[0] == "AccessDenied"
    assert "sqs:sendmessage" in error(refused)[1]
    # Then, unenforced: the allowed write is in moto, the refused message is not
    admin_ddb = client("dynamodb", aws.region, aws.endpoint_url)
    assert "Item" in admin_ddb.get_item(TableName=r.TABLE_NAME, Key=ITEM)
    admin_sqs = client("sqs", aws.region, aws.endpoint_url)
    waiting = admin_sqs.receive_message(QueueUrl=aws.standby_queue_url, WaitTimeSeconds=0)
    assert waiting.get("Messages", []) == []
    assert len(enforcer.denied) == 2


def test_an_assumed_tenant_session_reads_only_its_own_inputs(
    aws: RegionResources, assembly: Path
) -> None:
    admin_s3 = client("s3", aws.region, aws.endpoint_url)
    for tenant in ("acme", "other"):
        admin_s3.put_object(Bucket=aws.input_bucket, Key=f"tenants/{tenant}/a.csv", Body=b"a\n")
    enforcer = build_enforcer(assembly, region=aws.region, function=STREAM_WORKER)
    with enforced(enforcer):
        # workers/functions/input_access.py's AssumeRole: allowed, answered by moto
        assumed = fresh("sts", aws).assume_role(
            RoleArn=aws.input_reader_role_arn,
            RoleSessionName="reportgrid-input-acme",
            Tags=[{"Key": r.INPUT_TENANT_TAG, "Value": "acme"}],
        )["Credentials"]
        s3 = fresh(
            "s3",
            aws,
            aws_access_key_id=assumed["AccessKeyId"],
            aws_secret_access_key=assumed["SecretAccessKey"],
            aws_session_token=assumed["SessionToken"],
        )
        mine = s3.get_object(Bucket=aws.input_bucket, Key="tenants/acme/a.csv")["Body"].read()
        with pytest.raises(ClientError) as theirs:
            s3.get_object(Bucket=aws.input_bucket, Key="tenants/other/a.csv")
        with pytest.raises(ClientError) as head:
            s3.head_object(Bucket=aws.input_bucket, Key="tenants/other/a.csv")
        # The worker's own role reads no inputs
        with pytest.raises(ClientError) as own:
            fresh("s3", aws).get_object(Bucket=aws.input_bucket, Key="tenants/acme/a.csv")
    assert mine == b"a\n"
    code, message = error(theirs)
    assert code == "AccessDenied"
    assert "assumed-role/reportgrid-input-reader/reportgrid-input-acme" in message
    assert f'"arn:aws:s3:::{aws.input_bucket}/tenants/other/a.csv"' in message
    assert error(head) == ("403", "Forbidden")  # a HEAD's error has no body
    assert "assumed-role/StreamWorkerFunctionServiceRole" in error(own)[1]


async def test_aioboto3_clients_are_judged_too(aws: RegionResources, assembly: Path) -> None:
    with enforcing(assembly, region=aws.region, container="edge"):
        session = aioboto3.Session()
        async with (
            session.client(
                "dynamodb", region_name=aws.region, endpoint_url=aws.endpoint_url
            ) as ddb,
            session.client("sqs", region_name=aws.region, endpoint_url=aws.endpoint_url) as sqs,
        ):
            found = await ddb.get_item(TableName=r.TABLE_NAME, Key=ITEM)
            with pytest.raises(ClientError) as refused:
                await sqs.send_message(QueueUrl=aws.heavy_queue_url, MessageBody="x")
    assert "Item" not in found  # moto answered: no such item
    code, message = error(refused)
    assert code == "AccessDenied"
    assert "assumed-role/EdgeTaskTaskRole" in message
    waiting = client("sqs", aws.region, aws.endpoint_url).receive_message(
        QueueUrl=aws.heavy_queue_url, WaitTimeSeconds=0
    )
    assert waiting.get("Messages", []) == []


def test_the_entry_point_runs_a_module_under_a_role_with_its_argv(
    aws: RegionResources, assembly: Path
) -> None:
    argv = [
        sys.executable,
        "-m",
        "reportgrid.local.iam.enforce",
        "--template",
        str(assembly),
        "--region",
        aws.region,
        "--container",
        "edge",
        "--",
        "-m",
        "tests.integration.devstack.iam_probe",
        aws.endpoint_url,
        aws.region,
        aws.heavy_queue_url,
        "--extra",
    ]
    done = subprocess.run(
        argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["name"] == "__main__"
    assert report["argv"][1:] == [aws.endpoint_url, aws.region, aws.heavy_queue_url, "--extra"]
    assert report["argv"][0].endswith("iam_probe.py")
    assert report["send_message"] == "AccessDenied"
    assert "runs as arn:aws:iam::123456789012:role/EdgeTaskTaskRole" in done.stderr
    assert "iam: denied sqs:SendMessage" in done.stderr
    # The allowed PutItem reached moto
    item = client("dynamodb", aws.region, aws.endpoint_url).get_item(
        TableName=r.TABLE_NAME, Key={"pk": {"S": "probe#1"}}
    )
    assert "Item" in item


def test_the_entry_point_refuses_a_component_the_template_lacks(assembly: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "reportgrid.local.iam.enforce",
        "--template",
        str(assembly),
        "--region",
        "us-east-1",
        "--container",
        "no-such-container",
        "--",
        "-c",
        "pass",
    ]
    done = subprocess.run(
        argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "no ECS container named no-such-container" in done.stderr
    assert "edge" in done.stderr  # it lists the ones there are
