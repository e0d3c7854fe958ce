"""The region's results bucket, replicated to its neighbours' so that large results survive
the loss of a region and can be read wherever the report is read.

Replication runs both ways between a region and its peer (the next region in the ring):
this region's objects reach the peer's bucket, which is this region's edge's
REPLICA_RESULTS_BUCKET (read when the own bucket cannot be reached), and the results the
peer's standby writes for this region's mirrored tasks come back into this bucket. With two
regions that is one rule each way; with more, each bucket replicates to the next and the
previous region. Replicas are never replicated again (S3 replicates only objects written
by clients), so the rules form no loop."""

from __future__ import annotations

from collections.abc import Sequence

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
        replicate_to: Sequence[str],
        access_logs: s3.IBucket,
        result_days: int = 30,
    ) -> None:
        super().__init__(scope, id_)
        replication: list[s3.ReplicationRule] = []
        # Every bucket this one writes replicas into (the peer's first).
        self.replica_bucket_names = [
            r.results_bucket_name(account, other) for other in replicate_to
        ]
        for priority, (other, name) in enumerate(
            zip(replicate_to, self.replica_bucket_names, strict=True), start=1
        ):
            destination = s3.Bucket.from_bucket_attributes(
                self,
                "Replica" if priority == 1 else f"Replica-{other}",
                bucket_name=name,
                region=other,
                account=account,
            )
            replication.append(
                s3.ReplicationRule(
                    destination=destination,
                    id=f"results-to-{other}",
                    priority=priority,
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
