"""Report.error as google.rpc.Status, labels and the FULL view's spec, label validation,
ListReports' page size (AIP-158) and the terminal LRU's per-view replies."""

from __future__ import annotations

import hashlib

import pytest
from google.protobuf import struct_pb2
from google.rpc import code_pb2

from grpc_edge.cache import TerminalLru
from grpc_edge.list_filters import MAX_PAGE_SIZE, ListFilters
from reportgrid import records
from reportgrid.client import error_info
from reportgrid.errors import InvalidArgument
from reportgrid.records import ReportRecord
from reportgrid.states import State
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.validation import label_violations


def _record(**changes: object) -> ReportRecord:
    base = ReportRecord(
        report_id="rpt_1",
        tenant="acme",
        kind="summary",
        state=State.SUCCEEDED,
        created_ms=1_000,
        ended_ms=3_000,
        expires_at=10_000,
    )
    return base.with_(**changes)


def _spec_request() -> pb.SubmitReportRequest:
    params = struct_pb2.Struct()
    params.update({"group_by": ["region"]})
    return pb.SubmitReportRequest(
        kind="summary",
        params=params,
        input=pb.ReportInput(format=pb.DATA_FORMAT_CSV, inline_data=b"region\nx\n"),
        labels={"team": "billing"},
    )


@pytest.mark.parametrize(
    ("state", "code", "reason"),
    [
        (State.CANCELLED, code_pb2.CANCELLED, "CANCELLED_BY_REQUEST"),
        (State.FAILED, code_pb2.INTERNAL, "GENERATOR_FAILED"),
    ],
)
def test_a_report_that_did_not_succeed_carries_a_status(
    state: State, code: int, reason: str
) -> None:
    view = records.to_proto(
        _record(state=state, error_reason="GENERATOR_FAILED" if state is State.FAILED else ""),
        now_ms=5_000,
    )
    info = error_info(view)
    assert view.error.code == code
    assert info is not None
    assert (info.reason, info.domain) == (reason, "reportgrid.io")


def test_an_expired_report_says_so_and_how_it_ended() -> None:
    view = records.to_proto(
        _record(state=State.FAILED, error_reason="MISSING_COLUMN"), now_ms=10_000 * 1000
    )
    info = error_info(view)
    assert view.state == pb.REPORT_STATE_EXPIRED
    assert view.error.code == code_pb2.FAILED_PRECONDITION
    assert info is not None
    assert info.reason == "RETENTION_EXPIRED"
    assert dict(info.metadata) == {"ended_state": "FAILED", "failure_reason": "MISSING_COLUMN"}


def test_a_succeeded_report_has_no_error() -> None:
    assert not records.to_proto(_record(), now_ms=5_000).HasField("error")


def test_labels_in_every_view_and_the_spec_in_full_only_through_the_item() -> None:
    request = _spec_request()
    spec = records.request_spec(request, kind_version=3, ttl_seconds=600)
    stored = records.decode_record(
        records.encode_record(_record(labels=dict(request.labels), spec=spec))
    )
    basic = records.to_proto(stored, now_ms=5_000)
    full = records.to_proto(stored, now_ms=5_000, full=True)
    assert dict(basic.labels) == dict(full.labels) == {"team": "billing"}
    assert not basic.HasField("spec")
    assert full.spec.kind_version == 3
    assert full.spec.ttl.seconds == 600
    assert full.spec.durability == pb.DURABILITY_REGIONAL
    assert full.spec.params == request.params
    assert full.spec.input.inline.sha256 == hashlib.sha256(b"region\nx\n").hexdigest()
    assert full.spec.input.inline.size_bytes == len(b"region\nx\n")
    assert b"region\nx\n" not in full.SerializeToString()  # never the inline bytes


def test_label_rules_name_each_bad_label() -> None:
    found = label_violations({"Team": "x", "env": "Prod", "ok": "fine-1_"})
    assert [v.field for v in found] == ["labels[Team]", "labels[env]"]
    assert [v.field for v in label_violations({f"k{i}": "" for i in range(65)})] == ["labels"]
    assert label_violations({"a" * 63: "v" * 63}) == []
    assert [v.field for v in label_violations({"a" * 64: ""})] == [f"labels[{'a' * 64}]"]


def test_an_oversized_page_size_is_coerced_and_a_negative_one_refused() -> None:
    assert ListFilters.of(pb.ListReportsRequest(page_size=10_000)).page_size == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument) as err:
        ListFilters.of(pb.ListReportsRequest(page_size=-1))
    assert [v.field for v in err.value.violations] == ["page_size"]


def test_the_label_filter_binds_page_tokens_and_is_validated() -> None:
    plain = ListFilters.of(pb.ListReportsRequest())
    billing = ListFilters.of(pb.ListReportsRequest(labels={"team": "billing"}))
    other = ListFilters.of(pb.ListReportsRequest(labels={"team": "ops"}))
    assert len({plain.digest(), billing.digest(), other.digest()}) == 3
    with pytest.raises(InvalidArgument) as err:
        ListFilters.of(pb.ListReportsRequest(labels={"Bad": "x"}, view=7))  # type: ignore[arg-type]
    assert sorted(v.field for v in err.value.violations) == ["labels[Bad]", "view"]


def test_the_lru_keeps_one_reply_per_view() -> None:
    lru = TerminalLru()
    record = _record()
    lru.put(record)
    lru.keep_reply(record, False, False, b"basic", 5_000)
    assert lru.reply("acme", "rpt_1", False, True, 5_000) is None
    lru.keep_reply(record, False, True, b"full", 5_000)
    assert lru.reply("acme", "rpt_1", False, False, 5_000) == b"basic"
    assert lru.reply("acme", "rpt_1", False, True, 5_000) == b"full"


def test_the_worker_records_labels_and_spec_from_the_task() -> None:
    from functions.store import _new_record
    from reportgrid.task.v1.task_pb2 import TaskRecord

    task = TaskRecord(report_id="rpt_1", tenant="acme", request=_spec_request())
    record = _new_record(task, 1_000)
    full = records.to_proto(records.from_item(records.to_item(record)), now_ms=1_000, full=True)
    assert dict(full.labels) == {"team": "billing"}
    assert full.spec.kind_version >= 1  # the worker's registry knows "summary"
    assert full.spec.ttl.seconds == 7 * 24 * 3600
    assert full.spec.params == task.request.params
