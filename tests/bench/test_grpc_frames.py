"""The request bodies h2load sends are exactly one gRPC length-prefixed message."""

from __future__ import annotations

import pytest

from bench import grpc_frames, payloads
from reportgrid.v1 import reports_pb2 as pb


def test_frame_is_flag_length_and_message() -> None:
    message = payloads.submit_request()
    data = grpc_frames.frame(message)
    assert data[0] == 0  # not compressed
    assert int.from_bytes(data[1:5], "big") == message.ByteSize()
    assert pb.SubmitReportRequest.FromString(grpc_frames.unframe(data)) == message
    assert len(data) == grpc_frames.framed_size(message)


def test_unframe_rejects_truncated_extra_and_compressed_bodies() -> None:
    data = grpc_frames.frame(b"hello")
    with pytest.raises(ValueError, match="at least 5 bytes"):
        grpc_frames.unframe(data[:3])
    with pytest.raises(ValueError, match="says 5 message bytes but 4 follow"):
        grpc_frames.unframe(data[:-1])
    with pytest.raises(ValueError, match="says 5 message bytes but 6 follow"):
        grpc_frames.unframe(data + b"!")
    with pytest.raises(ValueError, match="compressed"):
        grpc_frames.unframe(b"\x01" + data[1:])


def test_submit_body_has_no_idempotency_key_and_a_light_kind() -> None:
    # The same body is sent every time: a key would turn every call after the first into a
    # deduplicated no-op and the scenario would measure nothing.
    request = payloads.submit_request()
    assert request.idempotency_key == ""
    assert request.kind == payloads.LIGHT_KIND


def test_null_replies_have_the_edge_reply_shapes() -> None:
    ids = payloads.codec()
    hot = payloads.succeeded_record(ids)
    replies = payloads.Replies.build(ids, hot)
    submit = pb.SubmitReportResponse.FromString(replies.submit)
    assert submit.state == pb.REPORT_STATE_PENDING
    ids.verify(payloads.TENANT, submit.report_id)  # a real id, so of the real length
    report = pb.Report.FromString(replies.get)
    assert report.report_id == hot.report_id
    assert report.state == pb.REPORT_STATE_SUCCEEDED
    assert report.result.row_count == 10
