"""The id-signing secrets (ENV.ID_SECRETS), one secret replicated to every region.

Every region must verify ids minted in every other (the table is global), so the value is
the same everywhere: created in the primary region, replicated by Secrets Manager.
"""

from __future__ import annotations

from collections.abc import Sequence

from constructs import Construct

from cdk.constructs.replicated_secret import ReplicatedSecret
from reportgrid import resources as r


class IdSecret(ReplicatedSecret):
    def __init__(self, scope: Construct, id_: str, *, replica_regions: Sequence[str]) -> None:
        super().__init__(
            scope,
            id_,
            secret_name=r.ID_SECRETS_SECRET_NAME,
            description="Reportgrid id-signing secrets: comma-separated, the first signs",
            replica_regions=replica_regions,
            rotation_note="Rotating id-signing keys means prepending a new key and later "
            "dropping the old one (ids signed with it stop verifying); a rotation Lambda "
            "that replaces the value would invalidate every issued id. Rotation is the "
            "documented manual step.",
        )
