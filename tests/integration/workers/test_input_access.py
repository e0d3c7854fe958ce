"""The worker's tenant-scoped S3 reader (functions/input_access.py) against the moto
server's STS: one AssumeRole per tenant, tagged with the tenant, reused until shortly
before the credentials expire."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from functions.input_access import RENEW_BEFORE_SECONDS, Credentials, TenantInputs
from reportgrid import resources
from reportgrid.local.bootstrap import LOCAL_INPUT_READER_ROLE, RegionResources, client


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _reader(aws: RegionResources, clock: _Clock, made: list[Credentials]) -> TenantInputs:
    def make_s3(credentials: Credentials) -> Any:
        made.append(credentials)
        return boto3.client(
            "s3",
            region_name=aws.region,
            endpoint_url=aws.endpoint_url,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
        )

    return TenantInputs(
        role_arn=aws.input_reader_role_arn,
        sts=client("sts", aws.region, aws.endpoint_url),
        make_s3=make_s3,
        fallback_s3=None,
        clock=clock,
    )


def test_credentials_are_assumed_per_tenant_cached_and_renewed(aws: RegionResources) -> None:
    clock = _Clock()
    made: list[Credentials] = []
    reader = _reader(aws, clock, made)
    key = resources.tenant_input_prefix("acme") + "in.csv"
    client("s3", aws.region, aws.endpoint_url).put_object(
        Bucket=aws.input_bucket, Key=key, Body=b"a\n1\n"
    )
    clock.now = made_at = 0.0
    s3 = reader.s3_for("acme")
    assert s3.get_object(Bucket=aws.input_bucket, Key=key)["Body"].read() == b"a\n1\n"
    (first,) = made
    identity = boto3.client(
        "sts",
        region_name=aws.region,
        endpoint_url=aws.endpoint_url,
        aws_access_key_id=first.access_key_id,
        aws_secret_access_key=first.secret_access_key,
        aws_session_token=first.session_token,
    ).get_caller_identity()
    assert identity["Arn"].endswith(f"/{LOCAL_INPUT_READER_ROLE}/reportgrid-input-acme")
    clock.now = made_at = first.expires_at - RENEW_BEFORE_SECONDS - 1
    assert reader.s3_for("acme") is s3  # cached: no second AssumeRole
    assert reader.assumed == 1
    reader.s3_for("globex")  # another tenant: its own session
    assert reader.assumed == 2
    clock.now = made_at + 2  # within the renewal margin: assumed again
    assert reader.s3_for("acme") is not s3
    assert reader.assumed == 3
    assert len({c.access_key_id for c in made}) == 3


def test_without_a_role_the_workers_own_client_is_used() -> None:
    own = object()
    reader = TenantInputs(role_arn=None, sts=None, make_s3=lambda c: None, fallback_s3=own)
    assert reader.s3_for("acme") is own
    assert reader.assumed == 0


def test_a_role_without_an_sts_client_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="STS client"):
        TenantInputs(
            role_arn="arn:aws:iam::1:role/r", sts=None, make_s3=lambda c: None, fallback_s3=None
        )
