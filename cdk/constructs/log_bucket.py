"""The region's log bucket: ALB access logs and the results bucket's server access logs."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk.constructs.nag import suppress


class LogBucket(Construct):
    """SSE-S3 (ALB access logging does not accept KMS keys), TLS only, expires after 90 days."""

    def __init__(self, scope: Construct, id_: str) -> None:
        super().__init__(scope, id_)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        suppress(
            self.bucket,
            "AwsSolutions-S1",
            "This bucket is the destination of the region's access logs; logging its own "
            "accesses would log into itself.",
        )
