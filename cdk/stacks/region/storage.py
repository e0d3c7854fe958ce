"""Storage and ingest: the access-log bucket, the task stream and queues, the results bucket,
the cache, and the table and id secret the data stack declares. It grants nothing: its
stores are granted by the components whose code uses them."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk.config import DeployConfig
from cdk.constructs.cache import ValkeyCache
from cdk.constructs.ingest import Ingest
from cdk.constructs.log_bucket import LogBucket
from cdk.constructs.monitoring import ONE_MINUTE, AlarmSpec, Signals
from cdk.constructs.network import Network
from cdk.constructs.results_bucket import ResultsBucket
from reportgrid import resources as r

E = r.ENV


class RegionalStorage:
    """Exposes the stores (`ingest`, `results`, `cache`, `table`, `id_secret`, `log_bucket`),
    where they are as the processes read it (`environment`, `container_secrets`), and its
    `signals`."""

    def __init__(
        self, scope: Construct, *, config: DeployConfig, region: str, network: Network
    ) -> None:
        capacity = config.capacity
        self.log_bucket = LogBucket(scope, "AccessLogs").bucket
        self.ingest = ingest = Ingest(scope, "Ingest", shards=capacity.stream_shards)
        self.results = ResultsBucket(
            scope,
            "Results",
            account=config.account,
            region=region,
            replicate_to=config.replication_regions(region),
            access_logs=self.log_bucket,
        )
        self.cache = ValkeyCache(
            scope,
            "Cache",
            vpc=network.vpc,
            subnets=network.private_subnets,
            max_data_gb=capacity.cache_max_data_gb,
            max_ecpu_per_second=capacity.cache_max_ecpu_per_second,
        )
        # Declared by the data stack (primary region) and replicated here under one name.
        self.table = dynamodb.TableV2.from_table_attributes(
            scope,
            "Table",
            table_name=r.TABLE_NAME,
            global_indexes=[r.TENANT_INDEX_NAME],
            grant_index_permissions=True,
        )
        self.id_secret = secretsmanager.Secret.from_secret_name_v2(
            scope, "IdSecrets", r.ID_SECRETS_SECRET_NAME
        )
        # cdk-nag's name for the table's index ARNs (index/*), which grant_read_write_data
        # writes: every principal on the table acknowledges it.
        self.table_indexes_finding = (
            f"Resource::arn:<AWS::Partition>:dynamodb:{region}:{config.account}:table/"
            f"{r.TABLE_NAME}/index/*"
        )
        # Every process that runs reports or serves them reads its stores from these.
        self.environment = {
            E.REGION: region,
            E.TABLE_NAME: r.TABLE_NAME,
            E.TASK_STREAM_NAME: ingest.stream.stream_name,
            E.HEAVY_QUEUE_URL: ingest.heavy_queue.queue_url,
            E.STANDBY_QUEUE_URL: ingest.standby_queue.queue_url,
            E.RESULTS_BUCKET: self.results.bucket.bucket_name,
            E.INPUT_BUCKETS: ",".join(config.input_buckets),
            E.METRICS_NAMESPACE: r.METRICS_NAMESPACE,
            E.LOG_LEVEL: "INFO",
        }
        # What the Lambdas that neither run reports nor serve them start with: every process
        # validates its settings at cold start, the id secrets (read by ARN) included.
        self.lambda_environment = {
            E.REGION: region,
            E.METRICS_NAMESPACE: r.METRICS_NAMESPACE,
            E.LOG_LEVEL: "INFO",
            E.ID_SECRETS_ARN: self.id_secret.secret_arn,
        }
        # The containers get the secrets' values from ECS (their execution roles may read
        # them); the Lambdas read them by ARN at cold start.
        self.container_secrets = {
            E.ID_SECRETS: ecs.Secret.from_secrets_manager(self.id_secret),
            E.REDIS_URL: ecs.Secret.from_secrets_manager(self.cache.url_secret),
        }
        self.signals = self._signals(replica_regions=[o for o in config.regions if o != region])

    def _signals(self, *, replica_regions: list[str]) -> Signals:
        ingest = self.ingest
        dlq_depth = [
            q.metric_approximate_number_of_messages_visible(statistic="Maximum", period=ONE_MINUTE)
            for q in (ingest.heavy_dlq, ingest.standby_dlq, ingest.failure_dlq)
        ]
        throttles = cw.MathExpression(
            expression="read + write",
            using_metrics={
                "read": _table_metric("ReadThrottleEvents"),
                "write": _table_metric("WriteThrottleEvents"),
            },
            label="DynamoDB throttle events",
            period=ONE_MINUTE,
        )
        # Records the stream refused for want of shards (PutRecord and PutRecords; the
        # edge retries them, so a burst costs latency, a steady rate costs Submits). The
        # stream is provisioned for the design load (cdk/config.py stream_shards): this
        # says the load outgrew it (docs/RUNBOOK.md, "The task stream is throttled").
        write_throttled = ingest.stream.metric_write_provisioned_throughput_exceeded(
            statistic="Sum", period=ONE_MINUTE
        )
        replication = [
            _table_metric("ReplicationLatency", statistic="Average", extra={"ReceivingRegion": o})
            for o in replica_regions
        ] or [
            _table_metric(
                "SuccessfulRequestLatency", statistic="Average", extra={"Operation": "GetItem"}
            )
        ]
        return Signals(
            alarms=[
                AlarmSpec(
                    "DeadLetters",
                    cw.MathExpression(
                        expression=" + ".join(f"d{i}" for i in range(len(dlq_depth))),
                        using_metrics={f"d{i}": m for i, m in enumerate(dlq_depth)},
                        label="messages in dead-letter queues",
                        period=ONE_MINUTE,
                    ),
                    0,
                    1,
                    "tasks reached a dead-letter queue",
                ),
                AlarmSpec("DynamoDbThrottles", throttles, 100, 3, "DynamoDB throttling requests"),
                # 1,000 a minute is under 0.2 % of the design load's records: noise from
                # one hot shard's second is below it, a stream short of shards far above.
                AlarmSpec(
                    "StreamWriteThrottled",
                    write_throttled,
                    1_000,
                    3,
                    "the task stream throttles writes: it needs more shards",
                ),
            ],
            rows=[
                [
                    cw.GraphWidget(title="Dead-letter queue depth", left=dlq_depth, width=8),
                    cw.GraphWidget(
                        title="DynamoDB and task-stream throttles",
                        left=[throttles],
                        right=[write_throttled],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="DynamoDB replication latency (ms)", left=replication, width=8
                    ),
                ]
            ],
        )


def _table_metric(
    name: str, *, statistic: str = "Sum", extra: dict[str, str] | None = None
) -> cw.Metric:
    return cw.Metric(
        namespace="AWS/DynamoDB",
        metric_name=name,
        dimensions_map={"TableName": r.TABLE_NAME, **(extra or {})},
        statistic=statistic,
        period=ONE_MINUTE,
    )
