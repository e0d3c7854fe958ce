"""The edge: the gRPC edge service behind its internal ALB (Global Accelerator's endpoint),
its WAF and certificate, and the grants of the edge's code (grpc_edge/)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_route53 as route53
from constructs import Construct

from cdk.config import DeployConfig
from cdk.constructs.edge_service import EdgeService
from cdk.constructs.monitoring import ONE_MINUTE, AlarmSpec, Signals, custom_metric
from cdk.constructs.nag import arn_finding, suppress
from cdk.constructs.service_image import ServiceImage
from cdk.constructs.web_acl import RateLimitedWebAcl
from cdk.stacks.region.multi_region import Peer
from cdk.stacks.region.storage import RegionalStorage
from reportgrid import resources as r

E = r.ENV
# Results are the only objects the edge may delete, and only under their own prefix.
RESULT_OBJECTS = r.RESULTS_KEY_PREFIX + "*"
# With guarded rollouts: SubmitReport's p99 (its target is 25 ms at half saturation,
# docs/PERFORMANCE.md) above this for 3 minutes fails a deployment of the edge. Per method:
# the service-wide latency includes WatchReport streams, which stay open for minutes.
SUBMIT_P99_LIMIT_MS = 500


class Edge:
    """Exposes `service` (EdgeService), `load_balancer`, `web_acl` and its `signals`."""

    def __init__(
        self,
        scope: Construct,
        *,
        config: DeployConfig,
        region: str,
        storage: RegionalStorage,
        peer: Peer | None,
        cluster: ecs.ICluster,
        project_dir: Path,
    ) -> None:
        capacity = config.capacity
        environment = dict(storage.environment)
        if peer is not None:
            # The edge's view of the peer: where it sends multi-region submits itself (the
            # mirror sends the rest) and where it reads results replicated from here. Only
            # the edge gets it: no other process here talks to the peer region.
            environment |= {
                E.PEER_REGION: peer.region,
                E.PEER_STANDBY_QUEUE_URL: peer.standby_queue.queue_url,
                E.REPLICA_RESULTS_BUCKET: peer.replica_bucket.bucket_name,
                E.MIRROR_GRACE_SECONDS: str(config.mirror_grace_seconds),
            }
        # One Dockerfile, two targets: each image carries only its own code and wheels.
        image = ServiceImage(scope, "EdgeImage", directory=project_dir, target="edge").image
        self.service = EdgeService(
            scope,
            "Edge",
            cluster=cluster,
            image=image,
            certificate=_certificate(scope, config, region),
            environment=environment,
            secrets=storage.container_secrets,
            capacity=capacity,
            access_logs=storage.log_bucket,
        )
        self.load_balancer = self.service.load_balancer
        self.web_acl = RateLimitedWebAcl(
            scope,
            "Waf",
            load_balancer_arn=self.load_balancer.load_balancer_arn,
            requests_per_5min=capacity.waf_requests_per_ip_per_5min,
        )
        self._grant(storage, peer)
        # Reads cached reports and publishes/receives report state changes.
        storage.cache.connections.allow_default_port_from(self.service.service)
        self.signals = self._signals(latency_alarm=config.guarded_rollouts)

    def _grant(self, storage: RegionalStorage, peer: Peer | None) -> None:
        role = self.service.task_role
        storage.table.grant_read_write_data(role)
        # SubmitReport -> PutRecords (grant_write: ListShards/PutRecord(s)), and the idle
        # health probe, DescribeStreamSummary (grpc_edge/dependency_health.py bounds its
        # rate: the API's quota is 20 calls/s per account).
        stream = storage.ingest.stream
        stream.grant_write(role)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kinesis:DescribeStreamSummary"], resources=[stream.stream_arn]
            )
        )
        # DownloadReport reads results (from the peer's replica when the own bucket fails);
        # DeleteReport removes every version of a result in both, because the buckets are
        # versioned and replication does not carry version deletes.
        results = storage.results.bucket
        for bucket in (results, peer.replica_bucket if peer else None):
            if bucket is not None:
                bucket.grant_read(role)
                bucket.grant_delete(role, RESULT_OBJECTS)
        findings = [
            storage.table_indexes_finding,
            arn_finding(results, "/*"),
            arn_finding(results, "/" + RESULT_OBJECTS),
            "Action::s3:GetBucket*",
            "Action::s3:GetObject*",
            "Action::s3:List*",
            "Action::s3:DeleteObject*",
        ]
        if peer is not None:
            # Multi-region submits go to the peer's standby queue from the edge itself.
            peer.standby_queue.grant_send_messages(role)
            replica = f"Resource::arn:<AWS::Partition>:s3:::{peer.replica_bucket.bucket_name}/"
            findings += [replica + "*", replica + RESULT_OBJECTS]
        suppress(
            role,
            "AwsSolutions-IAM5",
            "CDK grant helpers scoped to this region's reports table (its index ARNs, "
            "index/*) and the results buckets (their objects, bucket/*, with the Get*/List*/"
            "DeleteObject* action groups of grant_read/grant_delete). The edge reads results "
            "for DownloadReport, also from the replica, and DeleteReport removes every "
            f"version of a result: deletes only under {RESULT_OBJECTS} in both buckets.",
            findings=findings,
        )

    def _signals(self, *, latency_alarm: bool) -> Signals:
        edge = r.SERVICE_EDGE
        balancer = self.load_balancer
        targets = self.service.target_group
        healthy_hosts = targets.metrics.healthy_host_count(statistic="Minimum", period=ONE_MINUTE)
        elb_5xx = balancer.metrics.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, period=ONE_MINUTE)
        faults = custom_metric(r.METRIC.REQUEST_FAULTS, edge)
        cache_hit_rate = cw.MathExpression(
            expression="100 * hits / (hits + misses)",
            using_metrics={
                "hits": custom_metric(r.METRIC.CACHE_HITS, edge),
                "misses": custom_metric(r.METRIC.CACHE_MISSES, edge),
            },
            label="edge cache hit rate %",
            period=ONE_MINUTE,
        )
        return Signals(
            alarms=[
                AlarmSpec(
                    "EdgeNoHealthyTargets",
                    healthy_hosts,
                    1,
                    2,
                    "no healthy edge task behind the ALB",
                    too_few=True,
                    region_unhealthy=True,
                ),
                AlarmSpec(
                    "EdgeElb5xx",
                    elb_5xx,
                    50,
                    3,
                    "ALB answers 5xx (targets failing)",
                    region_unhealthy=True,
                ),
                AlarmSpec(
                    "EdgeFaults",
                    faults,
                    100,
                    3,
                    "edge RPCs ending in server faults",
                    region_unhealthy=True,
                ),
                *(
                    [
                        AlarmSpec(
                            "EdgeLatency",
                            cw.Metric(
                                namespace=r.METRICS_NAMESPACE,
                                metric_name=r.METRIC.REQUEST_LATENCY,
                                dimensions_map={
                                    r.METRIC_SERVICE_DIMENSION: edge,
                                    "Method": "SubmitReport",
                                },
                                statistic="p99",
                                period=ONE_MINUTE,
                            ),
                            SUBMIT_P99_LIMIT_MS,
                            3,
                            f"SubmitReport p99 above {SUBMIT_P99_LIMIT_MS} ms",
                        )
                    ]
                    if latency_alarm
                    else []
                ),
            ],
            rows=[
                [
                    cw.GraphWidget(
                        title="Edge requests",
                        left=[
                            custom_metric(r.METRIC.REQUESTS, edge),
                            balancer.metrics.request_count(period=ONE_MINUTE),
                        ],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Edge latency (ms)",
                        left=[
                            custom_metric(r.METRIC.REQUEST_LATENCY, edge, statistic="p50"),
                            custom_metric(r.METRIC.REQUEST_LATENCY, edge, statistic="p99"),
                        ],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Edge status",
                        left=[
                            *(
                                targets.metrics.http_code_target(code)
                                for code in (
                                    elbv2.HttpCodeTarget.TARGET_2XX_COUNT,
                                    elbv2.HttpCodeTarget.TARGET_4XX_COUNT,
                                    elbv2.HttpCodeTarget.TARGET_5XX_COUNT,
                                )
                            ),
                            elb_5xx,
                            faults,
                        ],
                        right=[healthy_hosts],
                        width=8,
                    ),
                ],
                [
                    cw.GraphWidget(
                        title="Shed requests",
                        left=[custom_metric(r.METRIC.SHED_REQUESTS, edge)],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Kinesis batch size (records per PutRecords)",
                        left=[
                            custom_metric(r.METRIC.BATCH_SIZE, edge, statistic="Average"),
                            custom_metric(r.METRIC.BATCH_SIZE, edge, statistic="Maximum"),
                        ],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="Cache hit rate (%)",
                        left=[cache_hit_rate],
                        right=[
                            cw.Metric(
                                namespace="AWS/ElastiCache",
                                metric_name="ElastiCacheProcessingUnits",
                                dimensions_map={"clusterId": r.PROJECT},
                                period=ONE_MINUTE,
                                statistic="Sum",
                            )
                        ],
                        width=8,
                    ),
                ],
            ],
        )


def _certificate(scope: Construct, config: DeployConfig, region: str) -> acm.ICertificate:
    if config.hosted_zone_id is None:
        return acm.Certificate.from_certificate_arn(
            scope, "Certificate", config.certificate_arns[region]
        )
    zone = route53.HostedZone.from_hosted_zone_attributes(
        scope,
        "Zone",
        hosted_zone_id=config.hosted_zone_id,
        zone_name=config.hosted_zone_name or "",
    )
    return acm.Certificate(
        scope,
        "Certificate",
        domain_name=config.domain_name or "",
        validation=acm.CertificateValidation.from_dns(zone),
    )
