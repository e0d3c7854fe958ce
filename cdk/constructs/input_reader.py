"""The input reader role: the only principal that may read report inputs, and only a
tenant's own prefix (docs/SECURITY.md, "Tenant boundary").

A worker assumes it for the tenant of the task it runs, passing the session tag
tenant=<tenant> (functions/input_access.py). Its one permission is s3:GetObject on
`<input bucket>/tenants/${aws:PrincipalTag/tenant}/*`: IAM resolves the variable from the
session's tag, so a session for tenant B cannot read tenant A's objects, whatever URI a task
names (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html:
variables may be used in the Resource element; a statement whose variable cannot be
resolved, a session without the tag, grants nothing). The worker roles themselves have no
access to the input buckets.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk.constructs.nag import suppress
from reportgrid import resources as r

TENANT_TAG_VARIABLE = "${aws:PrincipalTag/" + r.INPUT_TENANT_TAG + "}"


def tenant_objects_arn(bucket: str) -> str:
    """The ARN of every object the reader may read in `bucket`: the session's tenant's
    prefix, as reportgrid.resources.tenant_input_prefix writes it."""
    return f"arn:{Aws.PARTITION}:s3:::{bucket}/" + r.tenant_input_prefix(TENANT_TAG_VARIABLE) + "*"


class InputReader(Construct):
    """The role and its trust: the workers may assume it, only with a tenant session tag."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        buckets: Sequence[str],
        readers: Sequence[iam.IGrantable],
    ) -> None:
        super().__init__(scope, id_)
        # Passing session tags needs sts:TagSession next to sts:AssumeRole in the trust
        # policy (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_session-tags.html,
        # "Permissions required to add session tags"). The conditions make the tenant tag
        # required and the only tag: a session without it could read nothing anyway, but
        # refusing it at AssumeRole makes a missing tag an error instead of silence.
        tag = f"aws:RequestTag/{r.INPUT_TENANT_TAG}"
        conditions = {
            "Null": {tag: "false"},
            "StringLike": {tag: "?*"},
            "ForAllValues:StringEquals": {"aws:TagKeys": [r.INPUT_TENANT_TAG]},
        }
        principals = [
            iam.SessionTagsPrincipal(reader.grant_principal).with_conditions(conditions)
            for reader in readers
        ]
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.CompositePrincipal(*principals),
            description="Reads one tenant's report inputs (tenant from the session tag).",
            # Role chaining (a role assuming a role) allows sessions of at most one hour.
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[tenant_objects_arn(bucket) for bucket in buckets],
            )
        )
        # cdk-nag names the policy variable ${x} as <x> in its finding ids.
        nag_prefix = r.tenant_input_prefix(f"<aws:PrincipalTag/{r.INPUT_TENANT_TAG}>")
        suppress(
            self.role,
            "AwsSolutions-IAM5",
            "s3:GetObject only, on the objects under the session's own tenant prefix "
            "(tenants/${aws:PrincipalTag/tenant}/*) of each configured input bucket.",
            findings=[
                f"Resource::arn:<AWS::Partition>:s3:::{bucket}/{nag_prefix}*" for bucket in buckets
            ],
        )
        for reader in readers:
            # The callers' own side: same account, but stated so the grant reads in full.
            reader.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["sts:AssumeRole", "sts:TagSession"],
                    resources=[self.role.role_arn],
                )
            )
