"""The roles allow the calls the code really makes: the calls are recorded from the code
path itself (a real worker against the moto server), then looked up in the template's IAM
policies on the resolved resource."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Template

from functions.notify import Notifier
from functions.queue_worker.worker import QueueWorker
from functions.runner import Runner, Services
from functions.store import ReportStore
from reportgrid import resources as r
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.settings import Settings
from tests.infra.conftest import ACCOUNT, role_statements


def _queue_arn(template: Template, name: str) -> dict[str, Any]:
    (logical_id,) = template.find_resources("AWS::SQS::Queue", {"Properties": {"QueueName": name}})
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def _allowed_on(statements: list[dict[str, Any]], action: str) -> list[Any]:
    """Every resource an action is allowed on (minimized policies list several)."""
    found: list[Any] = []
    for statement in statements:
        if statement["Effect"] == "Allow" and action in statement["Action"]:
            resource = statement["Resource"]
            found += resource if isinstance(resource, list) else [resource]
    return found


def _record_calls(sqs: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every SQS operation the client makes, with its parameters (botocore's own event)."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, dict(params)))

    sqs.meta.events.register("before-parameter-build.sqs", record)
    return calls


def test_queue_worker_may_make_every_dlq_drain_call(
    aws: RegionResources, settings: Settings, redis_url: str, eu: Template
) -> None:
    sqs = client("sqs", aws.region, aws.endpoint_url)
    calls = _record_calls(sqs)
    # A message the drain cannot decode: it hides it for operators (ChangeMessageVisibility)
    # without needing a report, so every DLQ call of the drain is made.
    sqs.send_message(QueueUrl=aws.heavy_dlq_url, MessageBody="not a task")
    calls.clear()
    services = Services(
        settings=settings,
        store=ReportStore(client("dynamodb", aws.region, aws.endpoint_url), aws.table_name),
        s3=client("s3", aws.region, aws.endpoint_url),
        notifier=Notifier(redis_url),
    )
    worker = QueueWorker(
        Runner(services), sqs=sqs, queue_url=aws.heavy_queue_url, concurrency=1, lease_seconds=5
    )
    try:
        worker.drain_dlq()
    finally:
        services.notifier.close()

    def on_dlq(params: dict[str, Any]) -> bool:
        return (
            params.get("QueueUrl") == aws.heavy_dlq_url
            or params.get("QueueName") == r.HEAVY_DLQ_NAME
        )

    dlq_actions = sorted({f"sqs:{name}" for name, params in calls if on_dlq(params)})
    assert {"sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:ChangeMessageVisibility"} <= set(
        dlq_actions
    ), calls
    queue_actions = sorted(
        {f"sqs:{n}" for n, p in calls if p.get("QueueUrl") == aws.heavy_queue_url}
    )

    statements = role_statements(eu, "QueueWorkerTaskTaskRole")
    dlq_arn = _queue_arn(eu, r.HEAVY_DLQ_NAME)
    queue_arn = _queue_arn(eu, r.HEAVY_QUEUE_NAME)
    for action in dlq_actions:
        assert dlq_arn in _allowed_on(statements, action), f"{action} not allowed on the DLQ"
    for action in queue_actions:
        assert queue_arn in _allowed_on(statements, action), f"{action} not allowed on the queue"


def test_standby_worker_drains_no_dlq() -> None:
    # Only the heavy-report worker drains a DLQ; if the standby ever does, its role needs
    # the same grant on reportgrid-standby-dlq (and this test must move with it).
    from functions.standby.worker import StandbyWorker

    assert not hasattr(StandbyWorker, "drain_dlq")


def test_edge_may_probe_the_task_stream(eu: Template) -> None:
    # The edge's idle health probe calls DescribeStreamSummary on the task stream
    # (grpc_edge/dependency_health.py); grant_write alone does not cover it.
    (stream,) = eu.find_resources("AWS::Kinesis::Stream")
    statements = role_statements(eu, "EdgeTaskTaskRole")
    assert {"Fn::GetAtt": [stream, "Arn"]} in _allowed_on(
        statements, "kinesis:DescribeStreamSummary"
    )


def test_edge_may_write_and_release_idempotency_claims(eu: Template) -> None:
    # A keyed Submit claims its key with a conditional PutItem on the report table, reads
    # it consistently when an answer lacks the item, and releases it with a conditional
    # DeleteItem when the claim took the call's whole deadline, so that nothing was sent
    # (grpc_edge/service.py, grpc_edge/idempotency.py). The lean path signs
    # its calls itself, so the local region's IAM hook judges only the first claim: the
    # template must allow them on the table itself (not only its indexes).
    table = {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                f":dynamodb:eu-west-1:{ACCOUNT}:table/{r.TABLE_NAME}",
            ],
        ]
    }
    statements = role_statements(eu, "EdgeTaskTaskRole")
    for action in ("dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:DeleteItem"):
        assert table in _allowed_on(statements, action), action


def test_queue_worker_may_put_a_task_off_again(
    aws: RegionResources, settings: Settings, redis_url: str, eu: Template
) -> None:
    # A heavy task whose tenant (cap 1) has its one slot taken: the worker puts it off again
    # (functions/deferral.py), and every SQS call of that is allowed on the heavy queue.
    from functions.tenant_slots import TenantQuotas, TenantSlots, Wanted
    from reportgrid import tasks
    from tests.integration.workers.conftest import TENANT, make_task

    sqs = client("sqs", aws.region, aws.endpoint_url)
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    slots = TenantSlots(
        redis_url, TenantQuotas(ddb, aws.table_name, default_max_running=1), lease_seconds=30
    )
    assert slots.acquire([Wanted(TENANT, "someone-else", "owner")]).granted
    task = make_task(settings, "synthetic_heavy", {"output_rows": 1})
    sqs.send_message(QueueUrl=aws.heavy_queue_url, MessageBody=tasks.encode_text(task))
    services = Services(
        settings=settings,
        store=ReportStore(ddb, aws.table_name),
        s3=client("s3", aws.region, aws.endpoint_url),
        notifier=Notifier(redis_url),
        slots=slots,
    )
    worker = QueueWorker(
        Runner(services), sqs=sqs, queue_url=aws.heavy_queue_url, concurrency=1, lease_seconds=5
    )
    (message,) = worker._receive(1)
    calls = _record_calls(sqs)
    try:
        worker.handle(message)
    finally:
        services.notifier.close()
        slots.close()

    # SendMessageBatch is authorized as sqs:SendMessage (SQS API reference, batch actions).
    actions = {
        "sqs:" + n.removesuffix("Batch")
        for n, p in calls
        if p.get("QueueUrl") == aws.heavy_queue_url
    }
    assert {"sqs:SendMessage", "sqs:DeleteMessage"} <= actions, calls
    statements = role_statements(eu, "QueueWorkerTaskTaskRole")
    queue_arn = _queue_arn(eu, r.HEAVY_QUEUE_NAME)
    for action in actions:
        assert queue_arn in _allowed_on(statements, action), f"{action} not allowed on the queue"
