"""The region's results bucket, replicated to its neighbours' so that large results survive
the loss of a region and can be read wherever the report is read.

Replication runs both ways between a region and its peer (the next region in the ring):
this region's objects reach the peer's bucket, which is this region's edge's
REPLICA_RESULTS_BUCKET (read when the own bucket cannot be reached), and the results the
peer's standby writes for this region's mirrored tasks come back into this bucket. With two
regions that is one rule each way; with more, each bucket replicates to the next and the
previous region. Replicas are never replicated again (S3 replicates only objects written
by clients), so the rules form no loop.

The rules are not part of the bucket resource: S3 validates the destination bucket when the
replication configuration is put (PutBucketReplication fails with "Destination bucket must
have versioning enabled" / NoSuchBucket while it is missing: e.g.
hashicorp/terraform-provider-aws#23578), and the peer's bucket belongs to the peer's
regional stack, which deploys independently. So this construct creates the bucket and the
replication role, and exposes the rules; cdk/stacks/replication.py puts them once every
regional stack (every bucket) exists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk.constructs.nag import arn_finding, suppress
from reportgrid import resources as r


class ResultsBucket(Construct):
    """Named by resources.results_bucket_name (deterministic, so the peer region's bucket is
    known without a cross-stack reference). Versioned, as replication requires."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        account: str,
        region: str,
        replicate_to: Sequence[str],
        access_logs: s3.IBucket,
        result_days: int = 30,
    ) -> None:
        super().__init__(scope, id_)
        # Every bucket this one writes replicas into (the peer's first).
        self.replica_bucket_names = [
            r.results_bucket_name(account, other) for other in replicate_to
        ]
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=r.results_bucket_name(account, region),
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            versioned=True,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="results-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-results",
                    prefix=r.RESULTS_KEY_PREFIX,
                    # Reports carry their own TTL in DynamoDB; the object outlives the
                    # longest one and is then removed here.
                    expiration=Duration.days(result_days),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        # PutBucketReplication's Rules (SDK shape), one per destination: results only,
        # delete markers too, replication time control (99.99 % within 15 minutes).
        self.replication_rules: list[dict[str, Any]] = [
            {
                "ID": f"results-to-{other}",
                "Priority": priority,
                "Status": "Enabled",
                "Filter": {"Prefix": r.RESULTS_KEY_PREFIX},
                "DeleteMarkerReplication": {"Status": "Enabled"},
                "Destination": {
                    "Bucket": f"arn:{Aws.PARTITION}:s3:::{name}",
                    "ReplicationTime": {"Status": "Enabled", "Time": {"Minutes": 15}},
                    "Metrics": {"Status": "Enabled", "EventThreshold": {"Minutes": 15}},
                },
            }
            for priority, (other, name) in enumerate(
                zip(replicate_to, self.replica_bucket_names, strict=True), start=1
            )
        ]
        self.replication_role: iam.Role | None = None
        if self.replication_rules:
            # A child of the bucket (its acknowledgments cover it). No fixed role name: IAM
            # names are global per account and every region has one of these.
            self.replication_role = role = iam.Role(
                self.bucket,
                "ReplicationRole",
                assumed_by=iam.ServicePrincipal("s3.amazonaws.com"),
                description="S3 replication of Reportgrid results to the neighbouring regions",
            )
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:GetReplicationConfiguration", "s3:ListBucket"],
                    resources=[self.bucket.bucket_arn],
                )
            )
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=[
                        "s3:GetObjectVersionForReplication",
                        "s3:GetObjectVersionAcl",
                        "s3:GetObjectVersionTagging",
                    ],
                    resources=[self.bucket.arn_for_objects("*")],
                )
            )
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"],
                    resources=[
                        f"arn:{Aws.PARTITION}:s3:::{name}/*" for name in self.replica_bucket_names
                    ],
                )
            )
            suppress(
                self.bucket,
                "AwsSolutions-IAM5",
                "The S3 replication role reads every object version of this bucket and writes "
                "replicas into the neighbouring regions' results buckets (bucket/* on each).",
                findings=[
                    arn_finding(self.bucket, "/*"),
                    *(
                        f"Resource::arn:<AWS::Partition>:s3:::{name}/*"
                        for name in self.replica_bucket_names
                    ),
                ],
            )
