"""The idempotency fingerprint is canonical (the proto3 JSON form, sorted, without the key),
accepts the legacy fingerprints claims stored before it, and a failed claim release never
fails the call (grpc_edge/idempotency.py)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from grpc_edge.idempotency import ClaimStore, fingerprint
from reportgrid.errors import InvalidArgument
from reportgrid.v1 import reports_pb2 as pb


def _request() -> pb.SubmitReportRequest:
    request = pb.SubmitReportRequest(kind="summary", idempotency_key="k-1")
    request.params.update({"group_by": ["region"]})
    request.labels.update({"b": "2", "a": "1"})
    request.ttl.seconds = 60
    return request


def test_the_fingerprint_is_the_sha256_of_the_canonical_json() -> None:
    # Pinned text: a protobuf upgrade or another serializer must not change it.
    text = (
        '{"kind":"summary","labels":{"a":"1","b":"2"},"params":{"group_by":["region"]},"ttl":"60s"}'
    )
    assert fingerprint(_request()).value == "j1:" + hashlib.sha256(text.encode()).hexdigest()


def test_unknown_fields_and_the_key_do_not_count() -> None:
    # Given the same request from a newer client: with a field this edge does not know
    # (field 99, varint 1), under another key
    unknown = b"\x98\x06\x01"
    newer = pb.SubmitReportRequest.FromString(_request().SerializeToString() + unknown)
    newer.idempotency_key = "k-2"
    assert fingerprint(newer) == fingerprint(_request())
    assert unknown in newer.SerializeToString()  # the request itself keeps them


def test_inline_data_counts_by_its_content() -> None:
    a, b = _request(), _request()
    a.input.inline_data = b"region\neu\n" * 1000
    b.input.inline_data = b"region\nus\n" * 1000
    assert fingerprint(a) != fingerprint(b)
    assert a.input.inline_data == b"region\neu\n" * 1000  # the request is not touched


def test_a_claim_stored_before_the_canonical_form_still_matches() -> None:
    request = _request()
    request.input.inline_data = b"region\neu\n"
    # The fingerprint claims stored before (deterministic bytes without the key, unmarked)
    copy = pb.SubmitReportRequest()
    copy.CopyFrom(request)
    copy.idempotency_key = ""
    legacy = hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()
    current = fingerprint(request)
    assert current.matches(current.value)
    assert current.matches(legacy)
    other = _request()
    other.ttl.seconds = 61
    assert not fingerprint(other).matches(legacy)
    assert not current.matches(fingerprint(other).value)


def test_a_nan_param_is_a_clear_invalid_argument() -> None:
    request = _request()
    request.params["limit"] = float("nan")
    with pytest.raises(InvalidArgument) as caught:
        fingerprint(request)
    assert caught.value.violations[0].field == "params"


class _Unreachable:
    async def delete_item(self, **_: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")


async def test_a_release_that_gets_no_answer_is_counted_not_raised() -> None:
    store = ClaimStore(_Unreachable(), "t", region="us-east-1")  # type: ignore[arg-type]
    await store.release("acme", "k-1", "rpt_1", deadline=None)
    assert store.releases_failed == 1


def test_a_legacy_fingerprint_of_a_request_without_input_matches() -> None:
    request = _request()
    copy = pb.SubmitReportRequest()
    copy.CopyFrom(request)
    copy.idempotency_key = ""
    legacy = hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()
    assert fingerprint(request).matches(legacy)
