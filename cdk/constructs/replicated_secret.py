"""A secret with one value in every region: created in the primary region (the data stack),
replicated by Secrets Manager, generated once (64 letters and digits) and retained.

Used for the id-signing secrets (cdk/constructs/id_secret.py) and the webhook root secret
(cdk/constructs/webhooks.py): each must be the same everywhere, since every region verifies
what any other signed. Neither is rotated by a rotation Lambda (AwsSolutions-SMG4): each
says why, and how it is rotated instead, in `rotation_note`."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk.constructs.nag import suppress

VALUE_LENGTH = 64


class ReplicatedSecret(Construct):
    """Exposes `secret` (its construct id is "Secret", as the deployed stacks have it)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        secret_name: str,
        description: str,
        replica_regions: Sequence[str],
        rotation_note: str,
    ) -> None:
        super().__init__(scope, id_)
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            secret_name=secret_name,
            description=description,
            # Letters and digits only: never a comma (the id secrets are a comma list).
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=VALUE_LENGTH, exclude_punctuation=True, include_space=False
            ),
            replica_regions=[
                secretsmanager.ReplicaRegion(region=region) for region in replica_regions
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        suppress(self.secret, "AwsSolutions-SMG4", rotation_note)
