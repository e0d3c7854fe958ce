"""The id-signing secrets (ENV.ID_SECRETS), one secret replicated to every region.

Every region must verify ids minted in every other (the table is global), so the value is
the same everywhere: created in the primary region, replicated by Secrets Manager.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk.constructs.nag import suppress
from reportgrid import resources as r


class IdSecret(Construct):
    def __init__(self, scope: Construct, id_: str, *, replica_regions: Sequence[str]) -> None:
        super().__init__(scope, id_)
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            secret_name=r.ID_SECRETS_SECRET_NAME,
            description="Reportgrid id-signing secrets: comma-separated, the first signs",
            # One 64-character key; letters and digits only, so never a comma.
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
            replica_regions=[
                secretsmanager.ReplicaRegion(region=region) for region in replica_regions
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        suppress(
            self.secret,
            "AwsSolutions-SMG4",
            "Rotating id-signing keys means prepending a new key and later dropping the old "
            "one (ids signed with it stop verifying); a rotation Lambda that replaces the "
            "value would invalidate every issued id. Rotation is the documented manual step.",
        )
