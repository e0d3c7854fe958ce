"""Data stack: the global table with a replica per region, and the replicated id secret."""

from __future__ import annotations

from aws_cdk.assertions import Match

from reportgrid import resources as r
from tests.infra.conftest import REGIONS, Synthesized


def test_global_table_has_a_replica_in_every_region(synth: Synthesized) -> None:
    for region in REGIONS:
        synth.data.has_resource_properties(
            "AWS::DynamoDB::GlobalTable",
            {"Replicas": Match.array_with([Match.object_like({"Region": region})])},
        )
    replicas = next(iter(synth.data.find_resources("AWS::DynamoDB::GlobalTable").values()))[
        "Properties"
    ]["Replicas"]
    assert sorted(rep["Region"] for rep in replicas) == sorted(REGIONS)


def test_every_replica_has_pitr_deletion_protection_and_contributor_insights(
    synth: Synthesized,
) -> None:
    replicas = next(iter(synth.data.find_resources("AWS::DynamoDB::GlobalTable").values()))[
        "Properties"
    ]["Replicas"]
    for replica in replicas:
        assert replica["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": True
        }, replica["Region"]
        assert replica["DeletionProtectionEnabled"] is True, replica["Region"]
        assert replica["ContributorInsightsSpecification"]["Enabled"] is True, replica["Region"]


def test_table_is_kms_encrypted_streamed_and_retained(synth: Synthesized) -> None:
    synth.data.has_resource(
        "AWS::DynamoDB::GlobalTable",
        {
            "Properties": Match.object_like(
                {
                    "TableName": r.TABLE_NAME,
                    "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS"},
                    "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
                    "BillingMode": "PAY_PER_REQUEST",
                }
            ),
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_id_secret_is_named_and_replicated_to_the_other_regions(synth: Synthesized) -> None:
    synth.data.has_resource_properties(
        "AWS::SecretsManager::Secret",
        {
            "Name": r.ID_SECRETS_SECRET_NAME,
            "ReplicaRegions": [{"Region": region} for region in REGIONS[1:]],
            "GenerateSecretString": Match.object_like({"ExcludePunctuation": True}),
        },
    )


def test_data_stack_lives_in_the_primary_region(synth: Synthesized) -> None:
    assert synth.deployment.data.region == REGIONS[0]
    for stack in synth.deployment.regions.values():
        assert synth.deployment.data in stack.dependencies
