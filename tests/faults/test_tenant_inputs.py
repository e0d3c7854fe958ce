"""Issue 19 (hostile tenants), the inputs and submit-time half:

- 19.1 tenant B cannot read tenant A's S3 input: rejected at submit (the edge), and a task
  forged with B's tenant and A's URI, put straight on the queue, is refused by the worker
  (FAILED INPUT_FORBIDDEN) without assuming the reader role or reading the object; naming
  the results bucket is rejected exactly as naming a missing key there is (no existence
  leak). The worker reads a tenant's inputs with the input reader role's credentials,
  assumed (moto STS) with the tenant session tag and cached.
- 19.3 a ~240 KB SubmitReport of `"aggregates": [{}] * 60000` no longer stalls the edge's
  event loop, nor do the slow paths left (the largest bad document the schema bound lets
  through, 256 KiB of inline JSON lines): FIGURE the other tenant's worst wait while the
  hostile calls run (was ~10 s).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
import grpc
import pytest

from functions.input_access import Credentials, TenantInputs
from functions.runner import INPUT_FORBIDDEN, Outcome, Runner, Services
from reportgrid import resources, tasks
from reportgrid.local.bootstrap import RegionResources, client
from reportgrid.settings import Settings
from reportgrid.states import State
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.v1 import reports_pb2_grpc
from tests.faults.conftest import EdgeProcess, bearer, rpc_details
from tests.integration.edge.conftest import OTHER_TENANT, TENANT, running_edge
from tests.integration.workers.conftest import Region, make_task

SALES = b"region,amount\neu,10\neu,5\nus,7\n"


def _put(aws: RegionResources, tenant: str, name: str, body: bytes = SALES) -> str:
    """Tenant `tenant` uploads an input under its own prefix; its s3:// URI."""
    key = resources.tenant_input_prefix(tenant) + name
    client("s3", aws.region, aws.endpoint_url).put_object(
        Bucket=aws.input_bucket, Key=key, Body=body
    )
    return f"s3://{aws.input_bucket}/{key}"


def _s3_summary(uri: str) -> pb.SubmitReportRequest:
    request = pb.SubmitReportRequest(kind="summary")
    request.params.update({"aggregates": [{"op": "count"}]})
    request.input.s3_uri = uri
    request.input.format = pb.DATA_FORMAT_CSV
    return request


async def _refusal(stub: Any, key: str, request: pb.SubmitReportRequest) -> tuple[Any, ...]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitReport(request, metadata=bearer(key), timeout=10)
    err = caught.value
    bad = rpc_details(err)["BadRequest"]  # type: ignore[arg-type]
    violations = tuple((v.field, v.description) for v in bad.field_violations)
    return err.code(), err.details(), violations


async def test_another_tenants_input_and_the_results_bucket_are_refused_at_submit(
    settings: Settings, aws: RegionResources, api_key: str, other_key: str
) -> None:
    a_uri = _put(aws, TENANT, "sales.csv")
    # A stored result, as a worker writes one.
    result_key = resources.result_object_key("rpt_someone_elses")
    client("s3", aws.region, aws.endpoint_url).put_object(
        Bucket=aws.results_bucket, Key=result_key, Body=b"\x1f\x8b compressed"
    )
    async with running_edge(settings, api_key) as edge:
        # A reads its own input: accepted.
        accepted = await edge.stub.SubmitReport(
            _s3_summary(a_uri), metadata=bearer(api_key), timeout=10
        )
        assert accepted.report_id

        # B names A's object: INVALID_ARGUMENT on input.s3_uri, pointing at B's own prefix.
        code, message, violations = await _refusal(edge.stub, other_key, _s3_summary(a_uri))
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert [field for field, _ in violations] == ["input.s3_uri"]
        assert resources.tenant_input_prefix(OTHER_TENANT) in violations[0][1]
        assert TENANT not in message

        # The results bucket: an existing result and a missing key get the same answer,
        # and the same as a bucket that does not exist.
        existing = await _refusal(
            edge.stub, other_key, _s3_summary(f"s3://{aws.results_bucket}/{result_key}")
        )
        missing = await _refusal(
            edge.stub, other_key, _s3_summary(f"s3://{aws.results_bucket}/results/nope")
        )
        nowhere = await _refusal(edge.stub, other_key, _s3_summary("s3://no-such-bucket/x.csv"))
        assert existing == missing == nowhere
        assert existing[0] is grpc.StatusCode.INVALID_ARGUMENT


class RecordingInputs(TenantInputs):
    """The real reader (moto STS AssumeRole, a boto3 S3 client per tenant), recording which
    tenants it made clients for."""

    def __init__(self, aws: RegionResources, fallback_s3: Any) -> None:
        self.clients_for: list[str] = []
        self._aws = aws
        super().__init__(
            role_arn=aws.input_reader_role_arn,
            sts=client("sts", aws.region, aws.endpoint_url),
            make_s3=self._make,
            fallback_s3=fallback_s3,
        )

    def _make(self, credentials: Credentials) -> Any:
        return boto3.client(
            "s3",
            region_name=self._aws.region,
            endpoint_url=self._aws.endpoint_url,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
        )

    def s3_for(self, tenant: str) -> Any:
        self.clients_for.append(tenant)
        return super().s3_for(tenant)


def _services(region: Region) -> tuple[Services, RecordingInputs]:
    inputs = RecordingInputs(region.aws, region.services.s3)
    base = region.services
    services = Services(
        settings=base.settings,
        store=base.store,
        s3=base.s3,
        notifier=base.notifier,
        tenant_inputs=inputs,
    )
    return services, inputs


def _via_queue(region: Region, task: Any) -> Any:
    """Put the task straight on the heavy queue (no edge) and take it off as the queue
    worker does."""
    region.sqs.send_message(
        QueueUrl=region.settings.heavy_queue_url, MessageBody=tasks.encode_text(task)
    )
    (message,) = region.sqs.receive_message(
        QueueUrl=region.settings.heavy_queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=5
    )["Messages"]
    region.sqs.delete_message(
        QueueUrl=region.settings.heavy_queue_url, ReceiptHandle=message["ReceiptHandle"]
    )
    return tasks.decode_text(message["Body"])


def test_a_forged_task_for_another_tenants_input_is_refused_by_the_worker(
    region: Region,
) -> None:
    services, inputs = _services(region)
    runner = Runner(services)
    # make_task's tenant ("tenant-a") uploads an input and reads it: the worker assumes
    # the reader role for it (once: the credentials are cached for the next report).
    a_tenant = "tenant-a"
    a_uri = _put(region.aws, a_tenant, "sales.csv")
    for _ in range(2):
        own = _via_queue(region, make_task(region.settings, "summary", _COUNT, s3_uri=a_uri))
        assert runner.run(own).outcome is Outcome.SUCCEEDED
    assert inputs.assumed == 1
    assert inputs.clients_for == [a_tenant, a_tenant]

    # B's forged task names A's object and bypasses the edge.
    forged = make_task(region.settings, "summary", _COUNT, s3_uri=a_uri)
    forged.tenant = "tenant-b"
    forged.report_id = region.settings.id_codec().new("tenant-b", region.settings.region).value
    result = runner.run(_via_queue(region, forged))
    assert result.outcome is Outcome.FAILED
    record = region.get(forged.report_id)
    assert record is not None
    assert record.state is State.FAILED
    assert record.error_reason == INPUT_FORBIDDEN
    assert resources.tenant_input_prefix("tenant-b") in record.error_message
    # Not read: no reader session and no S3 client for B were ever made.
    assert inputs.assumed == 1
    assert "tenant-b" not in inputs.clients_for

    # The results bucket as input, forged the same way: refused the same way.
    into_results = make_task(
        region.settings,
        "summary",
        _COUNT,
        s3_uri=f"s3://{region.settings.results_bucket}/results/anything",
    )
    assert runner.run(_via_queue(region, into_results)).outcome is Outcome.FAILED
    stored = region.get(into_results.report_id)
    assert stored is not None
    assert stored.error_reason == INPUT_FORBIDDEN


_COUNT: dict[str, Any] = {"aggregates": [{"op": "count"}]}


def _hostile() -> pb.SubmitReportRequest:
    request = pb.SubmitReportRequest(kind="summary")
    request.params.update({"aggregates": [{}] * 60_000})
    request.input.inline_data = b"a\n1\n"
    request.input.format = pb.DATA_FORMAT_CSV
    assert 200_000 < request.ByteSize() < resources.MAX_RECEIVE_MESSAGE_BYTES
    return request


def _slow_path() -> pb.SubmitReportRequest:
    """The largest document the schema's bound lets through, bad in every value: jsonschema
    has to run on it (off the loop)."""
    request = pb.SubmitReportRequest(kind="summary")
    filters = [{"column": "a", "op": "=", "value": [{}] * 256} for _ in range(16)]
    request.params.update({"aggregates": [{"op": "count"}], "filters": filters})
    request.input.inline_data = b"a\n1\n"
    request.input.format = pb.DATA_FORMAT_CSV
    return request


def _json_flood() -> pb.SubmitReportRequest:
    """256 KiB of one-key JSON lines (the key empty, so it is refused): counting its columns
    means parsing all of it, which runs off the loop."""
    request = pb.SubmitReportRequest(kind="summary")
    request.params.update({"aggregates": [{"op": "count"}]})
    request.input.inline_data = b'{"": 1}\n' * (resources.MAX_INLINE_INPUT_BYTES // 8)
    request.input.format = pb.DATA_FORMAT_JSON
    return request


def test_a_huge_params_document_does_not_stall_other_tenants(
    edge_process: Callable[..., EdgeProcess],
    api_key: str,
    other_key: str,
    figure: Callable[..., None],
) -> None:
    edge = edge_process(workers=1)
    stop = threading.Event()
    hostile_seconds: list[float] = []
    codes: list[grpc.StatusCode] = []

    def attack() -> None:
        with grpc.insecure_channel(edge.target) as channel:
            stub = reports_pb2_grpc.ReportServiceStub(channel)
            for request in [_hostile(), _slow_path(), _json_flood()] * 4:
                started = time.perf_counter()
                try:
                    stub.SubmitReport(request, metadata=bearer(api_key), timeout=30)
                except grpc.RpcError as err:
                    codes.append(err.code())  # type: ignore[attr-defined]
                hostile_seconds.append(time.perf_counter() - started)
        stop.set()

    waits: list[float] = []
    with grpc.insecure_channel(edge.target) as channel:
        stub = reports_pb2_grpc.ReportServiceStub(channel)
        stub.ListReportKinds(pb.ListReportKindsRequest(), metadata=bearer(other_key), timeout=10)
        attacker = threading.Thread(target=attack)
        attacker.start()
        while not stop.is_set():
            started = time.perf_counter()
            stub.ListReportKinds(
                pb.ListReportKindsRequest(), metadata=bearer(other_key), timeout=30
            )
            waits.append(time.perf_counter() - started)
            time.sleep(0.005)
        attacker.join()
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 12
    worst = max(waits)
    figure(
        "19.3 huge params document vs another tenant",
        other_tenant_worst_wait_ms=round(worst * 1000, 1),
        other_tenant_calls=len(waits),
        hostile_call_worst_ms=round(max(hostile_seconds) * 1000, 1),
        before="~10 s",
    )
    assert worst < 0.5, f"another tenant waited {worst:.3f} s"
