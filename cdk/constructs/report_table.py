"""The reports table: a DynamoDB global table (TableV2) with a replica in every region; and
the lease arbiter's multi-Region strongly consistent table, when the regions allow one."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from reportgrid import resources as r


class ReportTable(Construct):
    """Declared in the primary region; `replica_regions` are the others. The key schema,
    index and stream match reportgrid.local.bootstrap.table_definition (tests/infra checks).

    Encryption uses the AWS managed KMS key (aws/dynamodb): KMS-encrypted in every replica
    without a customer key per region that would have to exist before this stack."""

    def __init__(self, scope: Construct, id_: str, *, replica_regions: Sequence[str]) -> None:
        super().__init__(scope, id_)
        pitr = dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True)
        insights = dynamodb.ContributorInsightsSpecification(enabled=True)
        self.table = dynamodb.TableV2(
            self,
            "Table",
            table_name=r.TABLE_NAME,
            partition_key=dynamodb.Attribute(
                name=r.PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            billing=dynamodb.Billing.on_demand(),
            time_to_live_attribute=r.TTL_ATTRIBUTE,
            dynamo_stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            point_in_time_recovery_specification=pitr,
            contributor_insights_specification=insights,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=r.TENANT_INDEX_NAME,
                    partition_key=dynamodb.Attribute(
                        name=r.TENANT_INDEX_PARTITION_KEY, type=dynamodb.AttributeType.STRING
                    ),
                    sort_key=dynamodb.Attribute(
                        name=r.TENANT_INDEX_SORT_KEY, type=dynamodb.AttributeType.STRING
                    ),
                    projection_type=dynamodb.ProjectionType.ALL,
                )
            ],
            replicas=[
                dynamodb.ReplicaTableProps(
                    region=region,
                    point_in_time_recovery_specification=pitr,
                    contributor_insights_specification=insights,
                    deletion_protection=True,
                )
                for region in replica_regions
            ],
        )


class LeaseTable(Construct):
    """The lease arbiter's table (functions/arbiter.py): a multi-Region strongly consistent
    global table, so that a conditional claim is checked against the latest write in every
    region. Declared in the primary region with the other regions as replicas (and, with two
    regions, a witness). No TTL (MRSC offers none): an item per report ever claimed, ~100
    bytes. (CDK adds the stream a replicated TableV2 always gets; nothing reads it.)"""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        replica_regions: Sequence[str],
        witness_region: str | None,
    ) -> None:
        super().__init__(scope, id_)
        self.table = dynamodb.TableV2(
            self,
            "Table",
            table_name=r.ARBITER_TABLE_NAME,
            partition_key=dynamodb.Attribute(
                name=r.PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            billing=dynamodb.Billing.on_demand(),
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            multi_region_consistency=dynamodb.MultiRegionConsistency.STRONG,
            witness_region=witness_region,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
            replicas=[
                dynamodb.ReplicaTableProps(region=region, deletion_protection=True)
                for region in replica_regions
            ],
        )
