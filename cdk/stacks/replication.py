"""One region's results replication, put after every regional stack has deployed.

Replication runs both ways between sibling regional stacks, and S3 validates the
destination bucket when a replication configuration is put (see
cdk/constructs/results_bucket.py). A rule inside the regional stack would make whichever
region deploys first fail, so the rules are put here, by a stack that depends on every
regional stack (every bucket exists), while the regional stacks stay independent of each
other and deploy in parallel.

It calls PutBucketReplication through an AwsCustomResource (Lambda in this stack, this
region) and DeleteBucketReplication when the stack is deleted. The role S3 assumes to
replicate lives beside the bucket in the regional stack (a same-region cross-stack
reference, which the dependency already orders).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import custom_resources as cr
from constructs import Construct

from cdk.constructs.nag import suppress


class ReplicationStack(Stack):
    """Exposes `replication` (the custom resource) for tests."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        bucket_name: str,
        role_arn: str,
        rules: Sequence[dict[str, Any]],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        bucket_arn = f"arn:{self.partition}:s3:::{bucket_name}"
        put = cr.AwsSdkCall(
            service="S3",
            action="putBucketReplication",
            parameters={
                "Bucket": bucket_name,
                "ReplicationConfiguration": {"Role": role_arn, "Rules": list(rules)},
            },
            physical_resource_id=cr.PhysicalResourceId.of(f"{bucket_name}-replication"),
        )
        self.replication = cr.AwsCustomResource(
            self,
            "ResultsReplication",
            on_create=put,
            on_update=put,  # a changed rule set is put again (PutBucketReplication replaces)
            on_delete=cr.AwsSdkCall(
                service="S3",
                action="deleteBucketReplication",
                parameters={"Bucket": bucket_name},
            ),
            # S3 authorizes Put/DeleteBucketReplication as s3:PutReplicationConfiguration,
            # and passing the replication role needs iam:PassRole on it.
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(
                        actions=["s3:PutReplicationConfiguration"], resources=[bucket_arn]
                    ),
                    iam.PolicyStatement(actions=["iam:PassRole"], resources=[role_arn]),
                ]
            ),
            # The Lambda runtime's SDK: no npm install at deploy time.
            install_latest_aws_sdk=False,
        )
        suppress(
            self,
            "AwsSolutions-IAM4",
            "The CDK AwsCustomResource provider's role uses AWSLambdaBasicExecutionRole for "
            "its logs only; its calls are scoped by the statements above.",
            findings=[
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole"
            ],
        )
        suppress(
            self,
            "AwsSolutions-L1",
            "The CDK AwsCustomResource provider picks its own Node.js runtime.",
        )
