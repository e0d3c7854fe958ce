"""The region's results bucket, replicated to the peer region's so that large results
survive the loss of a region."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

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
        peer_region: str | None,
        access_logs: s3.IBucket,
        result_days: int = 30,
    ) -> None:
        super().__init__(scope, id_)
        replication: list[s3.ReplicationRule] = []
        self.replica_bucket_name: str | None = None
        if peer_region is not None:
            self.replica_bucket_name = r.results_bucket_name(account, peer_region)
            replica = s3.Bucket.from_bucket_attributes(
                self,
                "Replica",
                bucket_name=self.replica_bucket_name,
                region=peer_region,
                account=account,
            )
            replication.append(
                s3.ReplicationRule(
                    destination=replica,
                    priority=1,
                    filter=s3.Filter(prefix=r.RESULTS_KEY_PREFIX),
                    delete_marker_replication=True,
                    # Replication time control: 99.99% of objects within 15 minutes.
                    replication_time_control=s3.ReplicationTimeValue.FIFTEEN_MINUTES,
                    metrics=s3.ReplicationTimeValue.FIFTEEN_MINUTES,
                )
            )
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
            replication_rules=replication or None,
            removal_policy=RemovalPolicy.RETAIN,
        )
