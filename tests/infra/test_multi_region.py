"""Multi-region at run time: the task mirror to the peer's standby queue, the standby worker
(also the region's heartbeat), the stream-failure drain, results replicated both ways, and
what the edge needs to reach its peer."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from cdk.config import ConfigError, DeployConfig, LeaseArbiterConfig, parse_config
from cdk.constructs import stream_failure_drain, task_mirror
from cdk.constructs.queue_worker import STANDBY_COMMAND, WORKER_COMMAND
from cdk.constructs.report_table import LeaseTable
from cdk.constructs.stream_worker import HANDLER as STREAM_WORKER_HANDLER
from cdk.deployment import build_deployment
from reportgrid import resources as r
from tests.infra.conftest import (
    ACCOUNT,
    Synthesized,
    allowed,
    container,
    context,
    function_by_handler,
    project_dir,
    replication_rules,
    role_statements,
)

E = r.ENV
PEER_STANDBY_ARN = f":sqs:us-east-1:{ACCOUNT}:{r.STANDBY_QUEUE_NAME}"


def _queue(template: Template, name: str) -> str:
    (logical_id,) = template.find_resources("AWS::SQS::Queue", {"Properties": {"QueueName": name}})
    return logical_id


def _mapping_of(template: Template, function_id: str) -> dict[str, object]:
    (mapping,) = template.find_resources(
        "AWS::Lambda::EventSourceMapping",
        {"Properties": {"FunctionName": {"Ref": function_id}}},
    ).values()
    # Tags aside (the app's tag on everything).
    return {k: v for k, v in mapping["Properties"].items() if k != "Tags"}


# ------------------------------------------------------------------------- task mirror


def test_mirror_runs_the_mirror_handler_from_the_shared_asset(eu: Template) -> None:
    _, mirror = function_by_handler(eu, task_mirror.HANDLER)
    _, worker = function_by_handler(eu, STREAM_WORKER_HANDLER)
    props = mirror["Properties"]
    assert props["Runtime"] == worker["Properties"]["Runtime"] == "python3.12"
    # One bundled asset for every Lambda of the region.
    assert props["Code"] == worker["Properties"]["Code"]
    # Outside the VPC: it reaches only AWS APIs, one of them in the peer region.
    assert "VpcConfig" not in props
    variables = dict(props["Environment"]["Variables"])
    # Every process validates its settings at start, the id secrets included.
    assert f":secret:{r.ID_SECRETS_SECRET_NAME}" in json.dumps(variables.pop(E.ID_SECRETS_ARN))
    assert variables == {
        E.REGION: "eu-west-1",
        E.PEER_REGION: "us-east-1",
        E.PEER_STANDBY_QUEUE_URL: {
            "Fn::Join": [
                "",
                [
                    "https://sqs.us-east-1.",
                    {"Ref": "AWS::URLSuffix"},
                    f"/{ACCOUNT}/{r.STANDBY_QUEUE_NAME}",
                ],
            ]
        },
        E.MIRROR_GRACE_SECONDS: str(r.MIRROR_GRACE_SECONDS),
        E.METRICS_NAMESPACE: r.METRICS_NAMESPACE,
        E.SERVICE_NAME: task_mirror.SERVICE,
        E.LOG_LEVEL: "INFO",
    }


def test_lambda_service_names_are_the_handlers() -> None:
    # Powertools' service (the metrics' dimension) is set in code; the env must agree.
    from functions.mirror import handler as mirror
    from functions.stream_failures import handler as drain

    assert mirror.logger.service == task_mirror.SERVICE
    assert drain.logger.service == stream_failure_drain.SERVICE


def test_mirror_consumes_the_task_stream_with_bounded_retries(eu: Template) -> None:
    mirror_id, _ = function_by_handler(eu, task_mirror.HANDLER)
    (stream,) = eu.find_resources("AWS::Kinesis::Stream")
    failures = _queue(eu, r.STREAM_FAILURE_QUEUE_NAME)
    assert _mapping_of(eu, mirror_id) == {
        "FunctionName": {"Ref": mirror_id},
        "EventSourceArn": {"Fn::GetAtt": [stream, "Arn"]},
        "BatchSize": 100,
        "MaximumBatchingWindowInSeconds": 1,
        "ParallelizationFactor": 2,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": 10,
        "MaximumRecordAgeInSeconds": 3600,
        "StartingPosition": "TRIM_HORIZON",
        "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [failures, "Arn"]}}},
    }


def test_only_the_mirror_and_the_edge_may_send_to_the_peer_standby_queue(eu: Template) -> None:
    mirror = role_statements(eu, "TaskMirrorFunctionServiceRole")
    assert any(PEER_STANDBY_ARN in res for res in allowed(mirror, "sqs:SendMessage"))
    edge = role_statements(eu, "EdgeTaskTaskRole")
    assert any(PEER_STANDBY_ARN in res for res in allowed(edge, "sqs:SendMessage"))
    for role in ("StreamWorkerFunctionServiceRole", "QueueWorkerTaskTaskRole"):
        resources = allowed(role_statements(eu, role), "sqs:SendMessage")
        assert not any(PEER_STANDBY_ARN in res for res in resources), role
    # The mirror touches nothing else of the peer's, nor the table.
    assert allowed(mirror, "dynamodb:PutItem") == []


def test_peer_is_the_next_region_in_the_ring(synth: Synthesized) -> None:
    us = synth.regional("us-east-1")
    _, mirror = function_by_handler(us, task_mirror.HANDLER)
    assert mirror["Properties"]["Environment"]["Variables"][E.PEER_REGION] == "eu-west-1"
    statements = role_statements(us, "TaskMirrorFunctionServiceRole")
    peer_arn = f":sqs:eu-west-1:{ACCOUNT}:{r.STANDBY_QUEUE_NAME}"
    assert any(peer_arn in res for res in allowed(statements, "sqs:SendMessage"))


@pytest.mark.slow
def test_a_single_region_deploys_no_mirror_and_no_peer(tmp_path: Path) -> None:
    ctx = context() | {
        "reportgrid:regions": ["eu-west-1"],
        "reportgrid:trafficDials": {},
    }
    app = cdk.App(context=ctx, outdir=str(tmp_path))
    config = parse_config(app.node.try_get_context)
    deployment = build_deployment(app, config, project_dir())
    stack = deployment.regions["eu-west-1"]
    template = Template.from_json(app.synth().get_stack_artifact(stack.artifact_id).template)
    assert stack.mirror is None
    assert (
        template.find_resources(
            "AWS::Lambda::Function", {"Properties": {"Handler": task_mirror.HANDLER}}
        )
        == {}
    )
    edge = container(template, ["python", "-m", "grpc_edge"])
    names = {e["Name"] for e in edge["Environment"]}
    assert not names & {E.PEER_REGION, E.PEER_STANDBY_QUEUE_URL, E.REPLICA_RESULTS_BUCKET}
    # The standby (the region's heartbeat) and the drain run in every deployment.
    assert container(template, list(STANDBY_COMMAND))
    function_by_handler(template, stream_failure_drain.HANDLER)
    (bucket,) = template.find_resources(
        "AWS::S3::Bucket",
        {"Properties": {"BucketName": r.results_bucket_name(ACCOUNT, "eu-west-1")}},
    ).values()
    assert "ReplicationConfiguration" not in bucket["Properties"]
    # The multi-region component feeds the monitoring only where it exists; the workers'
    # heartbeat alarm pages in every deployment.
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    assert not any(lid.startswith("MonitoringMirror") for lid in alarms), sorted(alarms)
    assert any(lid.startswith("MonitoringStandbyHeartbeat") for lid in alarms)
    (dashboard,) = template.find_resources("AWS::CloudWatch::Dashboard").values()
    assert "Task mirror" not in json.dumps(dashboard["Properties"]["DashboardBody"])


# ------------------------------------------------------------------------- standby worker


def test_standby_queue_redrives_to_its_dlq_and_is_tls_only(eu: Template) -> None:
    dlq = _queue(eu, r.STANDBY_DLQ_NAME)
    queue = _queue(eu, r.STANDBY_QUEUE_NAME)
    eu.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "QueueName": r.STANDBY_QUEUE_NAME,
            "MessageRetentionPeriod": 14 * 24 * 3600,
            "RedrivePolicy": {
                "deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
                "maxReceiveCount": r.HEAVY_MAX_RECEIVES,
            },
        },
    )
    eu.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "Queues": [{"Ref": queue}],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_standby_worker_runs_the_standby_with_its_settings(synth: Synthesized) -> None:
    template = synth.regional("eu-west-1")
    standby = container(template, list(STANDBY_COMMAND))
    environment = {e["Name"]: e["Value"] for e in standby["Environment"]}
    assert environment[E.STANDBY_QUEUE_URL] == {"Ref": _queue(template, r.STANDBY_QUEUE_NAME)}
    assert environment[E.TABLE_NAME] == r.TABLE_NAME
    assert "Ref" in environment[E.RESULTS_BUCKET]
    assert environment[E.WORKER_LEASE_SECONDS] == str(r.WORKER_LEASE_SECONDS)
    assert environment[E.MIRROR_GRACE_SECONDS] == str(synth.config.mirror_grace_seconds)
    assert float(environment[E.STANDBY_MARGIN_SECONDS]) == r.STANDBY_MARGIN_SECONDS
    assert environment[E.WORKER_CONCURRENCY] == str(synth.config.capacity.worker_concurrency)
    # Secrets from Secrets Manager, never plain values.
    assert {s["Name"] for s in standby["Secrets"]} == {E.ID_SECRETS, E.REDIS_URL}
    assert not {E.ID_SECRETS, E.REDIS_URL} & set(environment)


def test_worker_containers_never_run_the_edge_health_check(eu: Template) -> None:
    # The image's HEALTHCHECK probes the edge; ECS runs only checks a container definition
    # names, and the workers name none (the edge is judged by the ALB instead).
    for command in (list(WORKER_COMMAND), list(STANDBY_COMMAND)):
        assert "HealthCheck" not in container(eu, command), command


def test_standby_always_runs_at_least_one_task(synth: Synthesized) -> None:
    template = synth.regional("us-east-1")
    (service_id,) = (
        lid for lid in template.find_resources("AWS::ECS::Service") if lid.startswith("Standby")
    )
    service = template.find_resources("AWS::ECS::Service")[service_id]["Properties"]
    assert service["DesiredCount"] >= 1
    (target,) = (
        t["Properties"]
        for t in template.find_resources("AWS::ApplicationAutoScaling::ScalableTarget").values()
        if service_id in json.dumps(t["Properties"]["ResourceId"])
    )
    assert target["MinCapacity"] >= 1
    assert target["MinCapacity"] == synth.config.capacity.standby_min_tasks
    assert target["MaxCapacity"] == synth.config.capacity.standby_max_tasks


def test_standby_consumes_its_queue_and_reads_and_writes_reports(eu: Template) -> None:
    statements = role_statements(eu, "StandbyWorkerTaskTaskRole")
    standby = json.dumps({"Fn::GetAtt": [_queue(eu, r.STANDBY_QUEUE_NAME), "Arn"]})
    for action in (
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:SendMessage",
    ):
        assert allowed(statements, action) == [standby], action
    assert any(f"table/{r.TABLE_NAME}" in res for res in allowed(statements, "dynamodb:UpdateItem"))
    assert any("ResultsBucket" in res for res in allowed(statements, "s3:PutObject"))
    assert any("ResultsBucket" in res for res in allowed(statements, "s3:GetObject*"))
    # The heavy worker no longer consumes the standby queue.
    heavy_worker = role_statements(eu, "QueueWorkerTaskTaskRole")
    assert standby not in allowed(heavy_worker, "sqs:ReceiveMessage")


# ------------------------------------------------------------------------- failure drain


def test_failure_queue_has_its_own_dlq(eu: Template) -> None:
    dlq = _queue(eu, r.STREAM_FAILURE_DLQ_NAME)
    # AWS's advice for a Lambda SQS event source: visibility >= 6x the function's timeout.
    assert r.STREAM_FAILURE_VISIBILITY_TIMEOUT_SECONDS >= 6 * r.STREAM_FAILURE_TIMEOUT_SECONDS
    eu.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "QueueName": r.STREAM_FAILURE_QUEUE_NAME,
            "VisibilityTimeout": r.STREAM_FAILURE_VISIBILITY_TIMEOUT_SECONDS,
            "RedrivePolicy": {
                "deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
                "maxReceiveCount": 5,
            },
        },
    )
    assert r.STREAM_FAILURE_MAX_RECEIVES == 5


def test_drain_consumes_the_failure_queue(eu: Template) -> None:
    drain_id, drain = function_by_handler(eu, stream_failure_drain.HANDLER)
    assert drain["Properties"]["Timeout"] == r.STREAM_FAILURE_TIMEOUT_SECONDS
    failures = _queue(eu, r.STREAM_FAILURE_QUEUE_NAME)
    assert _mapping_of(eu, drain_id) == {
        "BatchSize": 10,
        "EventSourceArn": {"Fn::GetAtt": [failures, "Arn"]},
        "FunctionName": {"Ref": drain_id},
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
    }
    variables = drain["Properties"]["Environment"]["Variables"]
    (stream,) = eu.find_resources("AWS::Kinesis::Stream")
    assert variables[E.REGION] == "eu-west-1"
    assert variables[E.TABLE_NAME] == r.TABLE_NAME
    assert variables[E.TASK_STREAM_NAME] == {"Ref": stream}
    assert variables[E.HEAVY_QUEUE_URL] == {"Ref": _queue(eu, r.HEAVY_QUEUE_NAME)}
    assert variables[E.SERVICE_NAME] == stream_failure_drain.SERVICE
    assert variables[E.METRICS_NAMESPACE] == r.METRICS_NAMESPACE


def test_drain_reads_the_stream_and_redrives_to_the_heavy_queue(eu: Template) -> None:
    statements = role_statements(eu, "StreamFailureDrainFunctionServiceRole")
    (stream,) = eu.find_resources("AWS::Kinesis::Stream")
    stream_arn = json.dumps({"Fn::GetAtt": [stream, "Arn"]})
    for action in ("kinesis:GetShardIterator", "kinesis:GetRecords", "kinesis:DescribeStream"):
        assert allowed(statements, action) == [stream_arn], action
    heavy = json.dumps({"Fn::GetAtt": [_queue(eu, r.HEAVY_QUEUE_NAME), "Arn"]})
    assert allowed(statements, "sqs:SendMessage") == [heavy]
    assert any(f"table/{r.TABLE_NAME}" in res for res in allowed(statements, "dynamodb:UpdateItem"))
    # Never the stream's writes or the results.
    assert allowed(statements, "kinesis:PutRecords") == []
    assert not any(a.startswith("s3:") for s in statements for a in s["Action"])


# ------------------------------------------------------------------------- edge and results


def test_edge_knows_its_peer_and_may_read_the_replica(synth: Synthesized) -> None:
    for region, peer in (("eu-west-1", "us-east-1"), ("us-east-1", "eu-west-1")):
        template = synth.regional(region)
        edge = container(template, ["python", "-m", "grpc_edge"])
        environment = {e["Name"]: e["Value"] for e in edge["Environment"]}
        assert environment[E.PEER_REGION] == peer
        assert f"/{ACCOUNT}/{r.STANDBY_QUEUE_NAME}" in json.dumps(
            environment[E.PEER_STANDBY_QUEUE_URL]
        )
        assert f"sqs.{peer}." in json.dumps(environment[E.PEER_STANDBY_QUEUE_URL])
        replica = r.results_bucket_name(ACCOUNT, peer)
        assert environment[E.REPLICA_RESULTS_BUCKET] == replica
        assert environment[E.MIRROR_GRACE_SECONDS] == str(r.MIRROR_GRACE_SECONDS)
        statements = role_statements(template, "EdgeTaskTaskRole")
        assert any(f":s3:::{replica}/*" in res for res in allowed(statements, "s3:GetObject*"))


def test_replica_bucket_receives_this_regions_results(synth: Synthesized) -> None:
    # The bucket each edge falls back to must be one its own region replicates into.
    for region in synth.config.regions:
        template = synth.regional(region)
        edge = container(template, ["python", "-m", "grpc_edge"])
        replica = {e["Name"]: e["Value"] for e in edge["Environment"]}[E.REPLICA_RESULTS_BUCKET]
        destinations = [
            json.dumps(rule["Destination"]["Bucket"]) for rule in replication_rules(synth, region)
        ]
        assert any(f":s3:::{replica}" in d for d in destinations), (region, destinations)


def test_results_replicate_both_ways_in_a_larger_ring() -> None:
    config = parse_config(
        (
            context()
            | {
                "reportgrid:regions": ["eu-west-1", "us-east-1", "ap-southeast-2", "sa-east-1"],
                "reportgrid:certificateArns": {},
                "reportgrid:hostedZoneId": "Z1",
                "reportgrid:hostedZoneName": "example.com",
                "reportgrid:domainName": "api.example.com",
                "reportgrid:trafficDials": {},
            }
        ).get
    )
    assert config.peer_region("us-east-1") == "ap-southeast-2"
    # Its peer (the replica its edge reads) first, then the region it is peer of (whose
    # standby runs its mirrored tasks) so those results come back.
    assert config.replication_regions("us-east-1") == ("ap-southeast-2", "eu-west-1")
    assert config.replication_regions("sa-east-1") == ("eu-west-1", "ap-southeast-2")
    for region in config.regions:
        peer = config.peer_region(region)
        assert peer is not None
        assert region in config.replication_regions(peer)  # the peer replicates back


def test_edge_may_delete_results_only_under_the_results_prefix(synth: Synthesized) -> None:
    # DeleteReport removes every version of the result in its own bucket and the replica
    # (S3 replication does not carry version deletes); nothing outside results/.
    for region, peer in (("eu-west-1", "us-east-1"), ("us-east-1", "eu-west-1")):
        statements = role_statements(synth.regional(region), "EdgeTaskTaskRole")
        deletable = allowed(statements, "s3:DeleteObject*")
        replica = r.results_bucket_name(ACCOUNT, peer)
        assert any(f":s3:::{replica}/{r.RESULTS_KEY_PREFIX}*" in res for res in deletable)
        assert any(
            "ResultsBucket" in res and f"/{r.RESULTS_KEY_PREFIX}*" in res for res in deletable
        )
        assert all(f"/{r.RESULTS_KEY_PREFIX}*" in res for res in deletable)
        assert any(f":s3:::{replica}" in res for res in allowed(statements, "s3:List*"))


# ----------------------------------------------------------------- the lease arbiter


def _arbiter_config(regions: list[str], value: object) -> DeployConfig:
    return parse_config(
        (
            context()
            | {
                "reportgrid:regions": regions,
                "reportgrid:certificateArns": {},
                "reportgrid:hostedZoneId": "Z1",
                "reportgrid:hostedZoneName": "example.com",
                "reportgrid:domainName": "api.example.com",
                "reportgrid:trafficDials": {},
                "reportgrid:leaseArbiter": value,
            }
        ).get
    )


def test_the_lease_arbiter_is_off_unless_asked_for() -> None:
    assert _arbiter_config(["eu-west-1", "us-east-1"], None).lease_arbiter is None
    assert _arbiter_config(["eu-west-1", "us-east-1"], False).lease_arbiter is None


def test_the_lease_arbiter_takes_regions_of_one_mrsc_set_only() -> None:
    # Two regions: a witness from their set, picked or given
    picked = _arbiter_config(["us-east-1", "us-west-2"], True).lease_arbiter
    assert picked == LeaseArbiterConfig(("us-east-1", "us-west-2"), "us-east-2")
    given = _arbiter_config(["eu-west-1", "eu-central-1"], {"witnessRegion": "eu-west-3"})
    assert given.lease_arbiter == LeaseArbiterConfig(("eu-west-1", "eu-central-1"), "eu-west-3")
    # Three regions: three replicas, no witness
    three = _arbiter_config(["ap-northeast-1", "ap-northeast-2", "ap-northeast-3"], "true")
    assert three.lease_arbiter is not None
    assert three.lease_arbiter.witness_region is None
    # Regions in different sets (the default pair), a witness elsewhere, or too many: refused
    bad: list[tuple[list[str], object, str]] = [
        (["eu-west-1", "us-east-1"], True, "not all in one MRSC region set"),
        (["us-east-1", "us-east-2"], {"witnessRegion": "eu-west-1"}, "another region"),
        (["us-east-1", "us-east-2"], {"witnessRegion": "us-east-1"}, "another region"),
        (["us-east-1", "us-east-2", "us-west-2"], {"witnessRegion": "x"}, "no witness"),
        (["eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1"], True, "three replicas"),
        (["us-east-1", "us-east-2"], "yes", "give true, false"),
    ]
    for regions, value, message in bad:
        with pytest.raises(ConfigError, match=message):
            _arbiter_config(regions, value)


def test_the_lease_table_is_strongly_consistent_across_its_regions() -> None:
    app = cdk.App()
    stack = cdk.Stack(app, "Leases", env=cdk.Environment(account=ACCOUNT, region="us-east-1"))
    LeaseTable(stack, "Leases", replica_regions=["us-west-2"], witness_region="us-east-2")
    template = Template.from_stack(stack)
    template.has_resource_properties(
        "AWS::DynamoDB::GlobalTable",
        {
            "TableName": r.ARBITER_TABLE_NAME,
            "MultiRegionConsistency": "STRONG",
            "GlobalTableWitnesses": [{"Region": "us-east-2"}],
            "Replicas": Match.array_with(
                [
                    Match.object_like({"Region": "us-west-2"}),
                    Match.object_like({"Region": "us-east-1"}),
                ]
            ),
            # MRSC tables take no TTL
            "TimeToLiveSpecification": Match.absent(),
        },
    )
