"""The hook (reportgrid/local/iam/hook.py) on a real boto3 client whose endpoint refuses
every connection: a denied call raises AWS's error without sending anything, an allowed
one goes on to the (absent) endpoint. And the implicit KMS permissions of an encrypted
bucket, judged against the key's policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import handlers
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from reportgrid.local.bootstrap import LOCAL_ACCOUNT
from reportgrid.local.iam.actions import Call
from reportgrid.local.iam.enforce import install_from_spec, spec
from reportgrid.local.iam.hook import Enforcer, enforced, install, uninstall
from reportgrid.local.iam.resolve import Localization, Stack
from reportgrid.local.iam.template import build_model
from tests.unit.devstack.local_synth import REPO_ROOT

REGION = "eu-west-1"
KEY_ARN = f"arn:aws:kms:{REGION}:{LOCAL_ACCOUNT}:key/1234abcd-0000-0000-0000-000000000000"
NOWHERE = "http://127.0.0.1:9"  # nothing listens on the discard port


def template(*worker_statements: dict[str, Any]) -> dict[str, Any]:
    return {
        "Resources": {
            "Key": {
                "Type": "AWS::KMS::Key",
                "Properties": {
                    "KeyPolicy": {
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"AWS": f"arn:aws:iam::{LOCAL_ACCOUNT}:root"},
                                "Action": "kms:*",
                                "Resource": "*",
                            }
                        ]
                    }
                },
            },
            "Bucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "BucketName": "encrypted",
                    "BucketEncryption": {
                        "ServerSideEncryptionConfiguration": [
                            {
                                "ServerSideEncryptionByDefault": {
                                    "SSEAlgorithm": "aws:kms",
                                    "KMSMasterKeyID": {"Fn::GetAtt": ["Key", "Arn"]},
                                }
                            }
                        ]
                    },
                },
            },
            "WorkerRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": {"Statement": []},
                    "Policies": [
                        {
                            "PolicyName": "p",
                            "PolicyDocument": {
                                "Statement": [
                                    {
                                        "Effect": "Allow",
                                        "Action": ["s3:PutObject", "s3:GetObject"],
                                        "Resource": "arn:aws:s3:::encrypted/*",
                                    },
                                    *worker_statements,
                                ]
                            },
                        }
                    ],
                },
            },
        }
    }


def enforcer_of(document: dict[str, Any], **physical: str) -> Enforcer:
    local = Localization(region=REGION, physical=physical)
    model = build_model([Stack("S", document, REGION, LOCAL_ACCOUNT)], local)
    return Enforcer(model, model.role(logical_id="WorkerRole"))


def client(service: str) -> Any:
    return boto3.session.Session().client(  # type: ignore[call-overload]
        service,
        region_name=REGION,
        endpoint_url=NOWHERE,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )


def test_a_denied_call_is_answered_before_anything_is_sent() -> None:
    with enforced(enforcer_of(template())):
        s3 = client("s3")
        sqs = client("sqs")
        with pytest.raises(ClientError) as denied:
            s3.delete_object(Bucket="encrypted", Key="k")
        with pytest.raises(ClientError) as queue:
            sqs.send_message(QueueUrl=f"{NOWHERE}/{LOCAL_ACCOUNT}/q", MessageBody="x")
        with pytest.raises(ClientError) as unmapped:
            s3.list_buckets()
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "s3:DeleteObject" in denied.value.response["Error"]["Message"]
    assert queue.value.response["Error"]["Code"] == "AccessDenied"
    assert "no mapping for this operation" in unmapped.value.response["Error"]["Message"]


def test_an_allowed_call_goes_on_to_the_endpoint() -> None:
    document = template({"Effect": "Allow", "Action": "kms:GenerateDataKey", "Resource": KEY_ARN})
    with enforced(enforcer_of(document, **{"Key.Arn": KEY_ARN})):
        s3 = client("s3")
        with pytest.raises(EndpointConnectionError):
            s3.put_object(Bucket="encrypted", Key="k", Body=b"x")


def test_an_encrypted_buckets_key_needs_a_grant_the_key_policy_delegates() -> None:
    put = Call("s3", "PutObject", {"Bucket": "encrypted", "Key": "k"}, REGION, LOCAL_ACCOUNT)
    without = enforcer_of(template(), **{"Key.Arn": KEY_ARN}).judge(put)
    assert without is not None
    assert f"kms:GenerateDataKey on resource: {KEY_ARN}" in without.message
    grant = {"Effect": "Allow", "Action": "kms:GenerateDataKey", "Resource": KEY_ARN}
    assert enforcer_of(template(grant), **{"Key.Arn": KEY_ARN}).judge(put) is None
    # A key the local region cannot name: fail-closed
    unknown = enforcer_of(template(grant)).judge(put)
    assert unknown is not None
    assert "cannot tell the resource" in unknown.message


def test_install_and_uninstall_leave_botocore_as_it_was() -> None:
    before = list(handlers.BUILTIN_HANDLERS)
    install(enforcer_of(template()))
    try:
        assert len(handlers.BUILTIN_HANDLERS) == len(before) + 3
        with pytest.raises(RuntimeError, match="already installed"):
            install(enforcer_of(template()))
    finally:
        uninstall()
    after = list(handlers.BUILTIN_HANDLERS)
    assert after == before


def test_the_entry_point_imports_neither_grpc_nor_moto() -> None:
    # The edge forks its workers only if grpc is not loaded yet; moto would cost seconds.
    code = (
        "import sys, reportgrid.local.iam.enforce; "
        "sys.exit(1 if {'grpc', 'moto'} & set(sys.modules) else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()


def test_boto3s_default_session_made_before_install_is_judged_too() -> None:
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()  # what boto3.client() would do on first use
    with enforced(enforcer_of(template())):
        s3 = boto3.client(
            "s3",
            region_name=REGION,
            endpoint_url=NOWHERE,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        with pytest.raises(ClientError) as denied:
            s3.delete_object(Bucket="encrypted", Key="k")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"


PROGRAM = """
import json, sys
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
try:
    import reportgrid.local.dev
    hidden = False
except ImportError:
    hidden = True
sqs = boto3.session.Session().client(
    "sqs", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
    aws_access_key_id="testing", aws_secret_access_key="testing",
    config=Config(retries={"max_attempts": 1}),
)
try:
    sqs.send_message(QueueUrl="http://127.0.0.1:9/123456789012/reportgrid-heavy", MessageBody="x")
    code = "sent"
except ClientError as err:
    code = err.response["Error"]["Code"]
print(json.dumps({"hidden": hidden, "code": code, "argv": sys.argv[1:]}))
"""


def test_hide_self_keeps_the_hook_and_hides_the_dev_stack(assembly: Path, tmp_path: Path) -> None:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    argv = [sys.executable, "-m", "reportgrid.local.iam.enforce", "--template", str(assembly)]
    argv += ["--region", "us-east-1", "--container", "edge", "--hide-self", "--", str(script)]
    done = subprocess.run(
        [*argv, "a", "b"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"hidden": True, "code": "AccessDenied", "argv": ["a", "b"]}


def test_a_host_installs_the_hook_from_a_spec(assembly: Path, tmp_path: Path) -> None:
    # What a Lambda host's bootstrap does (install_from_spec's docstring), then the handler.
    bootstrap = textwrap.dedent(install_from_spec.__doc__ or "").split("\n\n", 1)[1]
    environ = {
        **os.environ,
        "REPORTGRID_LOCAL_IAM": spec(
            assembly, region="us-east-1", function="functions.mirror.handler.handler"
        ),
    }
    code = "import json, os, sys\n" + textwrap.dedent(bootstrap) + PROGRAM
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert (report["hidden"], report["code"]) == (True, "AccessDenied")
    assert "TaskMirrorFunctionServiceRole" in done.stderr


def test_keys_bound_to_roles_are_judged_as_those_roles() -> None:
    document = template()
    document["Resources"]["OtherRole"] = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {"Statement": []},
            "Policies": [
                {
                    "PolicyName": "p",
                    "PolicyDocument": {
                        "Statement": [
                            {"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": "*"}
                        ]
                    },
                }
            ],
        },
    }
    enforcer = enforcer_of(document)
    enforcer.bind("other-key", enforcer.model.role(logical_id="OtherRole"), "other")
    delete = Call("s3", "DeleteObject", {"Bucket": "encrypted", "Key": "k"}, REGION, LOCAL_ACCOUNT)
    assert enforcer.judge(delete, "other-key") is None
    denied = enforcer.judge(delete, "testing")
    assert denied is not None
    assert "assumed-role/WorkerRole/" in denied.message
