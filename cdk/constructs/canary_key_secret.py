"""The synthetic canary's API key (with the pipeline): one secret replicated to every region,
where each region's canary reads it. The stack creates it holding no key (a placeholder the
canary refuses); `python -m cdk.canary_key` stores a key for the canary tenant in the table
and puts it here (docs/CONTINUOUS_DEPLOYMENT.md)."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk.canary_key import CANARY_KEY_SECRET_NAME
from cdk.constructs.nag import suppress


class CanaryKeySecret(Construct):
    def __init__(self, scope: Construct, id_: str, *, replica_regions: Sequence[str]) -> None:
        super().__init__(scope, id_)
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            secret_name=CANARY_KEY_SECRET_NAME,
            description="Reportgrid synthetic canary: the canary tenant's API key",
            # Not an API key (they start "rg_"): the canary says none was provisioned.
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=32, exclude_punctuation=True, include_space=False
            ),
            replica_regions=[
                secretsmanager.ReplicaRegion(region=region) for region in replica_regions
            ],
            removal_policy=RemovalPolicy.DESTROY,
        )
        suppress(
            self.secret,
            "AwsSolutions-SMG4",
            "An API key is rotated by storing a new key in the table and revoking the old "
            "one, which `python -m cdk.canary_key` does in that order; a Secrets Manager "
            "rotation Lambda would change the value without the table knowing the key.",
        )
