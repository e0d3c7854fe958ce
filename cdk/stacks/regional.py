"""One region: network, ingest, storage, cache, the edge, the workers and their monitoring.
The stack composes the constructs and does every cross-construct grant (least privilege)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from aws_cdk import Aws, CfnElement, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.config import DeployConfig
from cdk.constructs.cache import ValkeyCache
from cdk.constructs.edge_service import EdgeService
from cdk.constructs.ingest import Ingest
from cdk.constructs.input_reader import InputReader
from cdk.constructs.log_bucket import LogBucket
from cdk.constructs.monitoring import MonitoredResources, RegionMonitoring
from cdk.constructs.nag import suppress
from cdk.constructs.network import Network
from cdk.constructs.python_function import bundled_code
from cdk.constructs.queue_worker import STANDBY_COMMAND, STANDBY_SERVICE, QueueWorker
from cdk.constructs.results_bucket import ResultsBucket
from cdk.constructs.service_cluster import ServiceCluster
from cdk.constructs.service_image import ServiceImage
from cdk.constructs.stream_failure_drain import StreamFailureDrain
from cdk.constructs.stream_worker import StreamWorker
from cdk.constructs.task_mirror import TaskMirror
from cdk.constructs.web_acl import RateLimitedWebAcl
from reportgrid import resources as r

E = r.ENV


class RegionalStack(Stack):
    """Exposes `edge` (its ALB is Global Accelerator's endpoint), `monitoring` and the rest
    for tests."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: DeployConfig,
        region: str,
        project_dir: Path,
        **kwargs: Any,
    ) -> None:
        self._zones = list(config.availability_zones(region))
        super().__init__(scope, id_, **kwargs)
        capacity = config.capacity
        peer = config.peer_region(region)

        network = Network(
            self,
            "Network",
            availability_zones=config.availability_zones(region),
            nat_gateways=capacity.nat_gateways,
        )
        self.network = network
        log_bucket = LogBucket(self, "AccessLogs").bucket
        self.ingest = ingest = Ingest(self, "Ingest", shards=capacity.stream_shards)
        self.results = results = ResultsBucket(
            self,
            "Results",
            account=config.account,
            region=region,
            replicate_to=config.replication_regions(region),
            access_logs=log_bucket,
        )
        self.cache = cache = ValkeyCache(
            self,
            "Cache",
            vpc=network.vpc,
            subnets=network.private_subnets,
            max_data_gb=capacity.cache_max_data_gb,
            max_ecpu_per_second=capacity.cache_max_ecpu_per_second,
        )
        # Declared by the data stack (primary region) and replicated here under one name.
        table = dynamodb.TableV2.from_table_attributes(
            self,
            "Table",
            table_name=r.TABLE_NAME,
            global_indexes=[r.TENANT_INDEX_NAME],
            grant_index_permissions=True,
        )
        id_secret = secretsmanager.Secret.from_secret_name_v2(
            self, "IdSecrets", r.ID_SECRETS_SECRET_NAME
        )
        peer_standby: sqs.IQueue | None = None
        replica_bucket: s3.IBucket | None = None
        if peer is not None:
            # Deterministic names in the peer region (the next in the ring): no cross-region
            # reference needed. The replica bucket is the peer's results bucket, which
            # receives this region's results (ResultsBucket replicates both ways).
            # The peer's regional stack creates both, and it deploys independently of this
            # one, so nothing here may need them to exist at deploy time: they are used only
            # in IAM statements (IAM does not check that a resource exists) and in
            # environment values read at run time. No event source, subscription or policy
            # attachment targets them (the peer's standby worker consumes its own queue);
            # the replication rules that do need the peer's bucket are put by
            # cdk/stacks/replication.py. tests/infra/test_deploy_order.py checks this.
            peer_standby = sqs.Queue.from_queue_arn(
                self,
                "PeerStandbyQueue",
                f"arn:{Aws.PARTITION}:sqs:{peer}:{config.account}:{r.STANDBY_QUEUE_NAME}",
            )
            replica_bucket = s3.Bucket.from_bucket_attributes(
                self,
                "ReplicaResults",
                bucket_name=r.results_bucket_name(config.account, peer),
                region=peer,
                account=config.account,
            )

        environment = {
            E.REGION: region,
            E.TABLE_NAME: r.TABLE_NAME,
            E.TASK_STREAM_NAME: ingest.stream.stream_name,
            E.HEAVY_QUEUE_URL: ingest.heavy_queue.queue_url,
            E.STANDBY_QUEUE_URL: ingest.standby_queue.queue_url,
            E.RESULTS_BUCKET: results.bucket.bucket_name,
            E.INPUT_BUCKETS: ",".join(config.input_buckets),
            E.METRICS_NAMESPACE: r.METRICS_NAMESPACE,
            E.LOG_LEVEL: "INFO",
        }
        # The edge's view of the peer: where it sends multi-region submits itself (the
        # mirror Lambda sends the rest) and where it reads results replicated from here.
        # Only the edge gets it: no other process here talks to the peer region.
        edge_environment = dict(environment)
        if peer is not None and peer_standby is not None and replica_bucket is not None:
            edge_environment |= {
                E.PEER_REGION: peer,
                E.PEER_STANDBY_QUEUE_URL: peer_standby.queue_url,
                E.REPLICA_RESULTS_BUCKET: replica_bucket.bucket_name,
                E.MIRROR_GRACE_SECONDS: str(config.mirror_grace_seconds),
            }
        container_secrets = {
            E.ID_SECRETS: ecs.Secret.from_secrets_manager(id_secret),
            E.REDIS_URL: ecs.Secret.from_secrets_manager(cache.url_secret),
        }

        # The Lambdas' one code asset, bundled once for all of them.
        code = bundled_code(project_dir)
        cluster = ServiceCluster(self, "Cluster", vpc=network.vpc).cluster
        # One Dockerfile, two targets: each image carries only its own code and wheels.
        edge_image = ServiceImage(self, "EdgeImage", directory=project_dir, target="edge").image
        worker_image = ServiceImage(
            self, "WorkerImage", directory=project_dir, target="worker"
        ).image
        self.edge = edge = EdgeService(
            self,
            "Edge",
            cluster=cluster,
            image=edge_image,
            certificate=self._certificate(config, region),
            environment=edge_environment,
            secrets=container_secrets,
            capacity=capacity,
            access_logs=log_bucket,
        )
        self.web_acl = RateLimitedWebAcl(
            self,
            "Waf",
            load_balancer_arn=edge.load_balancer.load_balancer_arn,
            requests_per_5min=capacity.waf_requests_per_ip_per_5min,
        )
        self.stream_worker = stream_worker = StreamWorker(
            self,
            "StreamWorker",
            code=code,
            stream=ingest.stream,
            failure_queue=ingest.failure_queue,
            vpc=network.vpc,
            environment={
                **environment,
                # The Lambda has no ECS-style secret injection: it reads these at cold start.
                E.ID_SECRETS_ARN: id_secret.secret_arn,
                E.REDIS_URL_ARN: cache.url_secret.secret_arn,
            },
            capacity=capacity,
        )
        self.queue_worker = queue_worker = QueueWorker(
            self,
            "QueueWorker",
            cluster=cluster,
            image=worker_image,
            queue=ingest.heavy_queue,
            environment=environment,
            secrets=container_secrets,
            capacity=capacity,
        )
        # Runs the peer's mirrored tasks that the peer has not progressed; always at least
        # one task, because it also writes this region's heartbeat (which tells the peer's
        # standby that this region is alive).
        self.standby_worker = standby_worker = QueueWorker(
            self,
            "StandbyWorker",
            cluster=cluster,
            image=worker_image,
            queue=ingest.standby_queue,
            environment={
                **environment,
                E.WORKER_LEASE_SECONDS: str(r.WORKER_LEASE_SECONDS),
                E.MIRROR_GRACE_SECONDS: str(config.mirror_grace_seconds),
                E.STANDBY_MARGIN_SECONDS: f"{config.standby_margin_seconds:g}",
            },
            secrets=container_secrets,
            capacity=capacity,
            command=STANDBY_COMMAND,
            service_name=STANDBY_SERVICE,
            container_name="standby",
            min_tasks=capacity.standby_min_tasks,
            max_tasks=capacity.standby_max_tasks,
        )
        self.mirror, self.failure_drain = self._stream_consumers(
            config=config,
            region=region,
            code=code,
            ingest=ingest,
            table=table,
            id_secret=id_secret,
            peer_standby=peer_standby,
        )

        # --- grants: each principal gets exactly what its code path uses -------------
        function = stream_worker.function
        standby_role = standby_worker.task_role
        for principal in (edge.task_role, function, queue_worker.task_role, standby_role):
            table.grant_read_write_data(principal)
        _grant_edge_stream(edge.task_role, ingest.stream)
        # (the event sources grant the stream worker and the mirror their stream reads)
        ingest.heavy_queue.grant_send_messages(function)  # heavy kinds are forwarded
        ingest.heavy_queue.grant_consume_messages(queue_worker.task_role)
        # The queue worker drains the heavy DLQ (functions/queue_worker/worker.py drain_dlq:
        # GetQueueUrl, ReceiveMessage, ChangeMessageVisibility), ending those reports FAILED.
        # The standby worker drains no DLQ.
        ingest.heavy_dlq.grant_consume_messages(queue_worker.task_role)
        # The standby receives, deletes, extends and re-queues (delays) mirrored tasks.
        ingest.standby_queue.grant_consume_messages(standby_role)
        ingest.standby_queue.grant_send_messages(standby_role)
        _grant_edge_storage(edge.task_role, results=results.bucket, replica=replica_bucket)
        input_reader = _grant_worker_storage(
            self,
            (function, queue_worker.task_role, standby_role),
            results=results.bucket,
            input_buckets=config.input_buckets,
        )
        _point_workers_at(input_reader, function, (queue_worker, standby_worker))
        id_secret.grant_read(function)
        cache.url_secret.grant_read(function)
        if peer_standby is not None and replica_bucket is not None:
            # Multi-region submits go to the peer's standby queue from the edge itself.
            peer_standby.grant_send_messages(edge.task_role)
        for peer_connections in (
            edge.service,
            queue_worker.service,
            standby_worker.service,
            function,
        ):
            cache.connections.allow_default_port_from(peer_connections)

        self.monitoring = RegionMonitoring(
            self,
            "Monitoring",
            region=region,
            alarm_email=config.alarm_email,
            resources=MonitoredResources(
                load_balancer=edge.load_balancer,
                target_group=edge.target_group,
                function=function,
                mirror_function=self.mirror.function if self.mirror else None,
                drain_function=self.failure_drain.function,
                stream=ingest.stream,
                heavy_queue=ingest.heavy_queue,
                standby_queue=ingest.standby_queue,
                failure_queue=ingest.failure_queue,
                dead_letter_queues=[ingest.heavy_dlq, ingest.standby_dlq, ingest.failure_dlq],
                cluster_name=cluster.cluster_name,
                standby_service_name=standby_worker.service.service_name,
                table_name=r.TABLE_NAME,
                cache_name=r.PROJECT,
                replica_regions=[other for other in config.regions if other != region],
            ),
        )
        self._acknowledge_grant_wildcards(
            table_arn=(
                f"arn:<AWS::Partition>:dynamodb:{region}:{config.account}:table/{r.TABLE_NAME}"
            ),
            results=results,
            edge=edge,
            workers=(queue_worker, standby_worker),
            stream_worker=stream_worker,
            drain=self.failure_drain,
            input_buckets=config.input_buckets,
        )

    def _stream_consumers(
        self,
        *,
        config: DeployConfig,
        region: str,
        code: lambda_.Code,
        ingest: Ingest,
        table: dynamodb.ITableV2,
        id_secret: secretsmanager.ISecret,
        peer_standby: sqs.IQueue | None,
    ) -> tuple[TaskMirror | None, StreamFailureDrain]:
        """The task mirror (with a peer only) and the stream-failure drain, with their grants.
        Neither needs the cache; both read the id secrets by ARN (every process validates its
        settings at cold start, ids included)."""
        lambda_environment = {
            E.REGION: region,
            E.METRICS_NAMESPACE: r.METRICS_NAMESPACE,
            E.LOG_LEVEL: "INFO",
            E.ID_SECRETS_ARN: id_secret.secret_arn,
        }
        mirror: TaskMirror | None = None
        peer = config.peer_region(region)
        if peer is not None and peer_standby is not None:
            mirror = TaskMirror(
                self,
                "TaskMirror",
                code=code,
                stream=ingest.stream,
                failure_queue=ingest.failure_queue,
                environment={
                    **lambda_environment,
                    E.PEER_REGION: peer,
                    E.PEER_STANDBY_QUEUE_URL: peer_standby.queue_url,
                    E.MIRROR_GRACE_SECONDS: str(config.mirror_grace_seconds),
                },
                parallelization_factor=config.capacity.lambda_parallelization_factor,
            )
            # (the event source grants the stream reads)
            peer_standby.grant_send_messages(mirror.function)
            id_secret.grant_read(mirror.function)
        drain = StreamFailureDrain(
            self,
            "StreamFailureDrain",
            code=code,
            failure_queue=ingest.failure_queue,
            environment={
                **lambda_environment,
                E.TABLE_NAME: r.TABLE_NAME,
                E.TASK_STREAM_NAME: ingest.stream.stream_name,
                E.HEAVY_QUEUE_URL: ingest.heavy_queue.queue_url,
            },
        )
        # It reads given-up batches back from the stream (shard + sequence range), re-drives
        # their tasks through the heavy queue and updates their reports.
        drain.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "kinesis:DescribeStream",
                    "kinesis:GetShardIterator",
                    "kinesis:GetRecords",
                ],
                resources=[ingest.stream.stream_arn],
            )
        )
        ingest.heavy_queue.grant_send_messages(drain.function)
        table.grant_read_write_data(drain.function)
        id_secret.grant_read(drain.function)
        return mirror, drain

    @property
    def availability_zones(self) -> list[str]:
        # The configured zones, instead of the CDK's context lookup (which needs credentials).
        return self._zones

    def _certificate(self, config: DeployConfig, region: str) -> acm.ICertificate:
        if config.hosted_zone_id is None:
            return acm.Certificate.from_certificate_arn(
                self, "Certificate", config.certificate_arns[region]
            )
        zone = route53.HostedZone.from_hosted_zone_attributes(
            self,
            "Zone",
            hosted_zone_id=config.hosted_zone_id,
            zone_name=config.hosted_zone_name or "",
        )
        return acm.Certificate(
            self,
            "Certificate",
            domain_name=config.domain_name or "",
            validation=acm.CertificateValidation.from_dns(zone),
        )

    def _acknowledge_grant_wildcards(
        self,
        *,
        table_arn: str,
        results: ResultsBucket,
        edge: EdgeService,
        workers: tuple[QueueWorker, ...],
        stream_worker: StreamWorker,
        drain: StreamFailureDrain,
        input_buckets: tuple[str, ...],
    ) -> None:
        """Each wildcard the CDK grant helpers write, named and explained per principal."""
        bucket_logical_id = self.resolve(
            self.get_logical_id(cast(CfnElement, results.bucket.node.default_child))
        )
        own_objects = f"Resource::<{bucket_logical_id}.Arn>/*"
        replicas = [
            f"Resource::arn:<AWS::Partition>:s3:::{name}/*" for name in results.replica_bucket_names
        ]
        # The edge reads the peer's bucket: the first replication destination.
        replica_objects = replicas[0] if replicas else None
        indexes = f"Resource::{table_arn}/index/*"
        read = ["Action::s3:GetBucket*", "Action::s3:GetObject*", "Action::s3:List*"]
        write = ["Action::s3:Abort*", "Action::s3:DeleteObject*"]
        why_data = (
            "CDK grant helpers scoped to this region's reports table (its index ARNs, "
            "index/*) and results bucket (its objects, bucket/*, with the Get*/List*/"
            "Abort*/DeleteObject* action groups of grant_read/grant_read_write)."
        )
        own_results = f"Resource::<{bucket_logical_id}.Arn>/{RESULT_OBJECTS}"
        edge_findings = [indexes, own_objects, own_results, *read, "Action::s3:DeleteObject*"]
        if replica_objects:
            edge_findings += [replica_objects, replica_objects.removesuffix("*") + RESULT_OBJECTS]
        suppress(
            edge.task_role,
            "AwsSolutions-IAM5",
            why_data + " The edge reads results for DownloadReport, also from the replica, "
            f"and DeleteReport removes every version of a result: deletes only under "
            f"{RESULT_OBJECTS} in both buckets.",
            findings=edge_findings,
        )
        for role in (*(w.task_role for w in workers), stream_worker.function.role):
            suppress(
                cast(iam.IRole, role),
                "AwsSolutions-IAM5",
                why_data + " The workers write and overwrite results; they read no input "
                "themselves (the input reader role does, per tenant).",
                findings=[indexes, own_objects, *read, *write],
            )
        reader = self.node.try_find_child("InputReader")
        if isinstance(reader, InputReader):
            # cdk-nag names the policy variable ${x} as <x> in its finding ids.
            tenant_prefix = r.tenant_input_prefix(f"<aws:PrincipalTag/{r.INPUT_TENANT_TAG}>")
            tenant_objects = [
                f"Resource::arn:<AWS::Partition>:s3:::{bucket}/{tenant_prefix}*"
                for bucket in input_buckets
            ]
            suppress(
                reader.role,
                "AwsSolutions-IAM5",
                "s3:GetObject only, on the objects under the session's own tenant prefix "
                "(tenants/${aws:PrincipalTag/tenant}/*) of each configured input bucket.",
                findings=tenant_objects,
            )
        suppress(
            cast(iam.IRole, drain.function.role),
            "AwsSolutions-IAM5",
            "CDK grant_read_write_data on this region's reports table: its index ARNs "
            "(index/*). The drain marks or re-drives reports whose batches were given up.",
            findings=[indexes],
        )
        for execution_role in (edge.execution_role, *(w.execution_role for w in workers)):
            suppress(
                execution_role,
                "AwsSolutions-IAM5",
                "ecr:GetAuthorizationToken accepts no resource but *; the image pull itself "
                "is scoped to the asset repository.",
                findings=["Resource::*"],
            )
        suppress(
            results.bucket,
            "AwsSolutions-IAM5",
            "The S3 replication role reads every object version of this bucket and writes "
            "replicas into the neighbouring regions' results buckets (bucket/* on each).",
            findings=[own_objects, *replicas],
        )


# Results are the only objects a principal may delete, and only under their own prefix.
RESULT_OBJECTS = r.RESULTS_KEY_PREFIX + "*"


def _grant_edge_stream(edge: iam.IRole, stream: kinesis.IStream) -> None:
    """SubmitReport -> PutRecords (grant_write: ListShards/PutRecord(s)), and the edge's
    idle health probe, DescribeStreamSummary (grpc_edge/dependency_health.py bounds its
    rate: the API's quota is 20 calls/s per account)."""
    stream.grant_write(edge)
    edge.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["kinesis:DescribeStreamSummary"], resources=[stream.stream_arn]
        )
    )


def _grant_edge_storage(
    edge: iam.IGrantable, *, results: s3.IBucket, replica: s3.IBucket | None
) -> None:
    """DownloadReport reads results (from the peer's replica when the own bucket fails);
    DeleteReport removes every version of a result in both, because the buckets are
    versioned and replication does not carry version deletes."""
    for bucket in (results, replica):
        if bucket is not None:
            bucket.grant_read(edge)
            bucket.grant_delete(edge, RESULT_OBJECTS)


def _point_workers_at(
    reader: InputReader | None, function: lambda_.Function, workers: tuple[QueueWorker, ...]
) -> None:
    """Tell every process that runs reports which role reads inputs."""
    if reader is None:
        return
    function.add_environment(E.INPUT_READER_ROLE_ARN, reader.role.role_arn)
    for worker in workers:
        worker.container.add_environment(E.INPUT_READER_ROLE_ARN, reader.role.role_arn)


def _grant_worker_storage(
    scope: Construct,
    workers: tuple[iam.IGrantable, ...],
    *,
    results: s3.IBucket,
    input_buckets: tuple[str, ...],
) -> InputReader | None:
    """Workers write results. They read report inputs only as the task's tenant, through
    the input reader role (cdk/constructs/input_reader.py): the worker roles themselves get
    nothing on the input buckets (docs/SECURITY.md, "Tenant boundary")."""
    for worker in workers:
        results.grant_read_write(worker)
    if not input_buckets:
        return None
    return InputReader(scope, "InputReader", buckets=input_buckets, readers=workers)
