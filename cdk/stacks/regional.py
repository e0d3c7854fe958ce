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
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.config import DeployConfig
from cdk.constructs.cache import ValkeyCache
from cdk.constructs.edge_service import EdgeService
from cdk.constructs.ingest import Ingest
from cdk.constructs.log_bucket import LogBucket
from cdk.constructs.monitoring import MonitoredResources, RegionMonitoring
from cdk.constructs.nag import suppress
from cdk.constructs.network import Network
from cdk.constructs.queue_worker import QueueWorker
from cdk.constructs.results_bucket import ResultsBucket
from cdk.constructs.service_cluster import ServiceCluster
from cdk.constructs.service_image import ServiceImage
from cdk.constructs.stream_worker import StreamWorker
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
            peer_region=peer,
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
            # Deterministic names in the peer region: no cross-region reference needed.
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
            E.METRICS_NAMESPACE: r.METRICS_NAMESPACE,
            E.LOG_LEVEL: "INFO",
        }
        if peer is not None and peer_standby is not None and replica_bucket is not None:
            environment |= {
                E.PEER_REGION: peer,
                E.PEER_STANDBY_QUEUE_URL: peer_standby.queue_url,
                E.REPLICA_RESULTS_BUCKET: replica_bucket.bucket_name,
            }
        container_secrets = {
            E.ID_SECRETS: ecs.Secret.from_secrets_manager(id_secret),
            E.REDIS_URL: ecs.Secret.from_secrets_manager(cache.url_secret),
        }

        cluster = ServiceCluster(self, "Cluster", vpc=network.vpc).cluster
        image = ServiceImage(self, "Image", directory=project_dir).image
        self.edge = edge = EdgeService(
            self,
            "Edge",
            cluster=cluster,
            image=image,
            certificate=self._certificate(config, region),
            environment=environment,
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
            project_dir=project_dir,
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
            image=image,
            queue=ingest.heavy_queue,
            environment=environment,
            secrets=container_secrets,
            capacity=capacity,
        )

        # --- grants: each principal gets exactly what its code path uses -------------
        function = stream_worker.function
        table.grant_read_write_data(edge.task_role)
        table.grant_read_write_data(function)
        table.grant_read_write_data(queue_worker.task_role)
        ingest.stream.grant_write(edge.task_role)  # SubmitReport -> PutRecords
        # (the event source grants the function its stream reads)
        ingest.heavy_queue.grant_send_messages(function)  # heavy kinds are forwarded
        ingest.heavy_queue.grant_consume_messages(queue_worker.task_role)
        ingest.standby_queue.grant_consume_messages(queue_worker.task_role)
        results.bucket.grant_read(edge.task_role)  # DownloadReport
        results.bucket.grant_read_write(function)
        results.bucket.grant_read_write(queue_worker.task_role)
        id_secret.grant_read(function)
        cache.url_secret.grant_read(function)
        if peer_standby is not None and replica_bucket is not None:
            # Mirroring tasks to the peer's standby queue; reading results replicated there.
            peer_standby.grant_send_messages(function)
            peer_standby.grant_send_messages(edge.task_role)
            replica_bucket.grant_read(edge.task_role)
        for peer_connections in (edge.service, queue_worker.service, function):
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
                stream=ingest.stream,
                heavy_queue=ingest.heavy_queue,
                standby_queue=ingest.standby_queue,
                dead_letter_queues=[ingest.heavy_dlq, ingest.standby_dlq, ingest.failure_queue],
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
            queue_worker=queue_worker,
            stream_worker=stream_worker,
        )

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
        queue_worker: QueueWorker,
        stream_worker: StreamWorker,
    ) -> None:
        """Each wildcard the CDK grant helpers write, named and explained per principal."""
        bucket_logical_id = self.resolve(
            self.get_logical_id(cast(CfnElement, results.bucket.node.default_child))
        )
        own_objects = f"Resource::<{bucket_logical_id}.Arn>/*"
        replica_objects = (
            f"Resource::arn:<AWS::Partition>:s3:::{results.replica_bucket_name}/*"
            if results.replica_bucket_name
            else None
        )
        indexes = f"Resource::{table_arn}/index/*"
        read = ["Action::s3:GetBucket*", "Action::s3:GetObject*", "Action::s3:List*"]
        write = ["Action::s3:Abort*", "Action::s3:DeleteObject*"]
        why_data = (
            "CDK grant helpers scoped to this region's reports table (its index ARNs, "
            "index/*) and results bucket (its objects, bucket/*, with the Get*/List*/"
            "Abort*/DeleteObject* action groups of grant_read/grant_read_write)."
        )
        edge_findings = [indexes, own_objects, *read]
        if replica_objects:
            edge_findings.append(replica_objects)
        suppress(
            edge.task_role,
            "AwsSolutions-IAM5",
            why_data + " The edge reads results for DownloadReport, also from the replica.",
            findings=edge_findings,
        )
        for role in (queue_worker.task_role, stream_worker.function.role):
            suppress(
                cast(iam.IRole, role),
                "AwsSolutions-IAM5",
                why_data + " The workers write and overwrite results.",
                findings=[indexes, own_objects, *read, *write],
            )
        suppress(
            cast(iam.IRole, stream_worker.function.role),
            "AwsSolutions-IAM5",
            "X-Ray PutTraceSegments/PutTelemetryRecords accept no resource but *.",
            findings=["Resource::*"],
        )
        for service in (edge, queue_worker):
            suppress(
                service.execution_role,
                "AwsSolutions-IAM5",
                "ecr:GetAuthorizationToken accepts no resource but *; the image pull itself "
                "is scoped to the asset repository.",
                findings=["Resource::*"],
            )
        replication = [own_objects, *([replica_objects] if replica_objects else [])]
        suppress(
            results.bucket,
            "AwsSolutions-IAM5",
            "The S3 replication role reads every object version of this bucket and writes "
            "replicas into the peer region's results bucket (bucket/* on both).",
            findings=replication,
        )
