"""Issue 19.1, the IAM half of the tenant boundary for inputs: the worker roles cannot read
the input buckets; only the input reader role can, assumed with a tenant session tag, and
only the objects under that tenant's prefix (cdk/constructs/input_reader.py)."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Template

from cdk.constructs.queue_worker import STANDBY_COMMAND, WORKER_COMMAND
from reportgrid import resources
from tests.infra.conftest import INPUT_BUCKET, allowed, container, role_statements

WORKER_ROLES = (
    "StreamWorkerFunctionServiceRole",
    "QueueWorkerTaskTaskRole",
    "StandbyWorkerTaskTaskRole",
)


def _reader(template: Template) -> tuple[str, dict[str, Any]]:
    ((logical_id, role),) = (
        (lid, res)
        for lid, res in template.find_resources("AWS::IAM::Role").items()
        if lid.startswith("InputReaderRole")
    )
    return logical_id, role


def test_the_reader_may_get_only_the_sessions_tenant_prefix(eu: Template) -> None:
    statements = role_statements(eu, "InputReaderRole")
    assert [s["Action"] for s in statements] == [["s3:GetObject"]]
    (resource,) = allowed(statements, "s3:GetObject")
    prefix = resources.tenant_input_prefix("${aws:PrincipalTag/tenant}")
    assert f":s3:::{INPUT_BUCKET}/{prefix}*" in resource
    assert resources.INPUT_TENANT_TAG == "tenant"


def test_the_reader_trusts_the_workers_only_with_a_tenant_tag(eu: Template) -> None:
    _, role = _reader(eu)
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    principals = json.dumps(statement["Principal"])
    for worker in WORKER_ROLES:
        assert worker in principals, worker
    assert "EdgeTaskTaskRole" not in principals
    tag = f"aws:RequestTag/{resources.INPUT_TENANT_TAG}"
    assert statement["Condition"]["Null"] == {tag: "false"}
    assert statement["Condition"]["ForAllValues:StringEquals"] == {
        "aws:TagKeys": [resources.INPUT_TENANT_TAG]
    }


def test_no_worker_role_reads_an_input_bucket_itself(eu: Template) -> None:
    reader_id, _ = _reader(eu)
    for worker in WORKER_ROLES:
        statements = role_statements(eu, worker)
        assert not any(INPUT_BUCKET in res for res in allowed(statements, "s3:GetObject")), worker
        assert not any(INPUT_BUCKET in json.dumps(s["Resource"]) for s in statements), worker
        # What it may do instead: assume the reader, tagging the session.
        assume = allowed(statements, "sts:AssumeRole")
        assert any(reader_id in res for res in assume), worker
        assert any(reader_id in res for res in allowed(statements, "sts:TagSession")), worker
    edge = role_statements(eu, "EdgeTaskTaskRole")
    assert not any(INPUT_BUCKET in json.dumps(s["Resource"]) for s in edge)
    assert not allowed(edge, "sts:AssumeRole")


def test_every_report_process_knows_the_buckets_and_the_reader(eu: Template) -> None:
    reader_id, _ = _reader(eu)
    env_name = resources.ENV.INPUT_READER_ROLE_ARN
    for command in (WORKER_COMMAND, STANDBY_COMMAND):
        env = {e["Name"]: e["Value"] for e in container(eu, list(command))["Environment"]}
        assert env[resources.ENV.INPUT_BUCKETS] == INPUT_BUCKET
        assert reader_id in json.dumps(env[env_name])
    functions = [
        f
        for f in eu.find_resources("AWS::Lambda::Function").values()
        if env_name in f["Properties"].get("Environment", {}).get("Variables", {})
    ]
    assert len(functions) == 1
