"""Acknowledge cdk-nag findings (cdk-nag v3 reads CDK's native Validations acknowledgments).

An acknowledgment on a construct covers its subtree. Each one names the finding exactly
(`AwsSolutions-IAM5[Resource::...]` for per-finding rules) and carries a reason about that
resource.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from constructs import IConstruct


def suppress(
    construct: IConstruct,
    rule: str,
    reason: str,
    *,
    findings: Sequence[str] = (),
) -> None:
    """Acknowledge `rule` on `construct` (or only the listed `findings` of it)."""
    ids = [f"{rule}[{finding}]" for finding in findings] or [rule]
    Validations.of(construct).acknowledge(*(Acknowledgment(id=i, reason=reason) for i in ids))


def arn_finding(construct: IConstruct, suffix: str = "") -> str:
    """An IAM5 finding on `construct`'s own ARN (+ suffix), as cdk-nag spells it:
    `Resource::<LogicalId.Arn>/*`."""
    element = cast(CfnElement, construct.node.default_child)
    logical_id = Stack.of(construct).resolve(element.logical_id)
    return f"Resource::<{logical_id}.Arn>{suffix}"
