"""The synthetic canary's API key: its tenant, the secret it lives in, and the one command
that makes (or replaces) it.

    python -m cdk.canary_key --region eu-west-1      # the primary region

A new key is stored in the global table for the canary tenant (so it works in every
region), then written to the secret the data stack created (replicated to every region,
where each region's canary reads it), and only then is the key it replaces revoked. A
canary holding the old key is refused once, drops its cached key and reads the new one on
its next run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from reportgrid import apikeys
from reportgrid import resources as r

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

CANARY_TENANT: Final = "reportgrid-canary"
CANARY_KEY_SECRET_NAME: Final = "reportgrid/canary-api-key"  # noqa: S105 -- a name


def rotate_canary_key(
    *, dynamodb: DynamoDBClient, secrets: SecretsManagerClient, table: str = r.TABLE_NAME
) -> str:
    """Store a new key, point the secret at it, revoke the previous one; the new key."""
    previous = _current(secrets)
    key = apikeys.generate_key()
    apikeys.put_key(dynamodb, table, key, CANARY_TENANT, name="synthetic canary")
    secrets.put_secret_value(SecretId=CANARY_KEY_SECRET_NAME, SecretString=key)
    if previous is not None and apikeys.well_formed(previous):
        try:
            apikeys.revoke_key(dynamodb, table, previous)
        except ClientError as err:
            # Never stored (or already gone): nothing to revoke.
            if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
    return key


def _current(secrets: SecretsManagerClient) -> str | None:
    try:
        value: str = secrets.get_secret_value(SecretId=CANARY_KEY_SECRET_NAME)["SecretString"]
    except ClientError as err:
        if err.response["Error"]["Code"] == "ResourceNotFoundException":
            raise SystemExit(
                f"no secret {CANARY_KEY_SECRET_NAME}: deploy Reportgrid-Data with the pipeline "
                "context first (it creates the secret)"
            ) from None
        raise
    return value.strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--region", required=True, help="the primary region (the data stack's)")
    parser.add_argument("--endpoint-url", help="another endpoint (the local moto server)")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {"region_name": args.region, "endpoint_url": args.endpoint_url}
    try:
        rotate_canary_key(
            dynamodb=boto3.client("dynamodb", **options),
            secrets=boto3.client("secretsmanager", **options),
        )
    except (BotoCoreError, ClientError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"a new canary key for tenant {CANARY_TENANT} is in {CANARY_KEY_SECRET_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
