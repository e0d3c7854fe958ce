"""Acknowledge cdk-nag findings (cdk-nag v3 reads CDK's native Validations acknowledgments).

An acknowledgment on a construct covers its subtree. Each one names the finding exactly
(`AwsSolutions-IAM5[Resource::...]` for per-finding rules) and carries a reason about that
resource.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, Validations
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
