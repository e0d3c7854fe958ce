"""Scenario 13: property-based fuzzing (hypothesis) of an edge subprocess over gRPC: every
request message type, generated from its descriptor, and raw bytes to every method. No
call may end UNKNOWN or INTERNAL or leak exception text, and the edge must be healthy and
serving afterwards."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reportgrid.v1 import reports_pb2 as pb
from tests.faults.conftest import METHODS, SERVICE, STREAMING, EdgeProcess, bearer

EXAMPLES = 150
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
_FD = FieldDescriptor
_INTS = {
    _FD.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    _FD.TYPE_SINT32: st.integers(-(2**31), 2**31 - 1),
    _FD.TYPE_SFIXED32: st.integers(-(2**31), 2**31 - 1),
    _FD.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    _FD.TYPE_SINT64: st.integers(-(2**63), 2**63 - 1),
    _FD.TYPE_SFIXED64: st.integers(-(2**63), 2**63 - 1),
    _FD.TYPE_UINT32: st.integers(0, 2**32 - 1),
    _FD.TYPE_FIXED32: st.integers(0, 2**32 - 1),
    _FD.TYPE_UINT64: st.integers(0, 2**64 - 1),
    _FD.TYPE_FIXED64: st.integers(0, 2**64 - 1),
}
_JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, width=32) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
# Plausible values mixed in with random ones, so fuzzing reaches past the first check.
_TEXT = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["synthetic", "summary", "timeseries", "rpt_", "s3://b/k", "-1", ""]),
)


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type in _INTS:
        return _INTS[field.type]
    if field.type == _FD.TYPE_BOOL:
        return st.booleans()
    if field.type in (_FD.TYPE_FLOAT, _FD.TYPE_DOUBLE):
        return st.floats(allow_nan=True, width=32)
    if field.type == _FD.TYPE_STRING:
        return _TEXT
    if field.type == _FD.TYPE_BYTES:
        return st.binary(max_size=200)
    if field.type == _FD.TYPE_ENUM:  # proto3 enums are open: unknown numbers too
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-5, 1000))
    raise AssertionError(f"unhandled field type {field.type}")


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type with any subset of fields set to any value."""
    cls = _message_class(descriptor)
    if descriptor.full_name == "google.protobuf.Struct":
        return st.dictionaries(st.text(max_size=10), _JSON, max_size=5).map(_struct)
    if descriptor.full_name in ("google.protobuf.Duration", "google.protobuf.Timestamp"):
        return st.builds(
            cls, seconds=st.integers(-(2**40), 2**40), nanos=st.integers(-999_999_999, 999_999_999)
        )
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if _is_scalar_map(field):
            key, item = field.message_type.fields
            fields[field.name] = st.dictionaries(_scalar(key), _scalar(item), max_size=3)
            continue
        if field.type == _FD.TYPE_MESSAGE:
            if depth >= 3:
                continue
            value = messages(field.message_type, depth + 1)
        else:
            value = _scalar(field)
        if field.is_repeated:
            value = st.lists(value, max_size=3)
        fields[field.name] = value
    return st.fixed_dictionaries({}, optional=fields).map(lambda kw: _build(cls, kw))


def _is_scalar_map(field: Any) -> bool:
    """A map<scalar, scalar> field (labels): built from a dict, not as repeated entries."""
    entry = field.message_type if field.type == _FD.TYPE_MESSAGE else None
    return bool(
        entry is not None
        and entry.GetOptions().map_entry
        and entry.fields_by_name["value"].type != _FD.TYPE_MESSAGE
    )


def _message_class(descriptor: Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


def _struct(value: dict[str, Any]) -> Message:
    from google.protobuf.struct_pb2 import Struct

    struct = Struct()
    struct.update(value)
    return struct


def _build(cls: type[Message], values: dict[str, Any]) -> Message:
    message = cls()
    for name, value in values.items():
        field = cls.DESCRIPTOR.fields_by_name[name]
        if _is_scalar_map(field):
            getattr(message, name).update(value)
        elif field.is_repeated:
            target = getattr(message, name)
            for item in value:
                if field.type == _FD.TYPE_MESSAGE:
                    target.add().CopyFrom(item)
                else:
                    target.append(item)
        elif field.type == _FD.TYPE_MESSAGE:
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


REQUESTS = {
    method: pb.DESCRIPTOR.services_by_name["ReportService"].methods_by_name[method].input_type
    for method in METHODS
}


@pytest.fixture
def fuzzed_edge(edge_process: Callable[..., EdgeProcess]) -> EdgeProcess:
    # The edge as deployed: one tenant calling in sequence stays far under the per-tenant
    # rate (5,000 a second per edge process), so the limit is never in the way.
    return edge_process()


def _call(channel: grpc.Channel, method: str, payload: bytes, auth: Any) -> grpc.StatusCode:
    try:
        if method in STREAMING:
            for _ in channel.unary_stream(SERVICE + method)(payload, metadata=auth, timeout=5):
                pass
        else:
            channel.unary_unary(SERVICE + method)(payload, metadata=auth, timeout=5)
    except grpc.RpcError as err:
        code: grpc.StatusCode = err.code()  # type: ignore[attr-defined]
        text = err.details() or ""  # type: ignore[attr-defined]
        assert code not in FORBIDDEN, (method, payload[:80], code, text)
        assert "Traceback" not in text, text
        assert "Error(" not in text, text
        return code
    return grpc.StatusCode.OK


def _serialized(message: Message) -> bytes:
    return message.SerializeToString()


def _fuzz(
    channel: grpc.Channel,
    method: str,
    auth: Any,
    seen: Counter[str],
    payloads: st.SearchStrategy[bytes],
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(payload=payloads)
    def one(payload: bytes) -> None:
        seen[_call(channel, method, payload, auth).name] += 1

    one()


@pytest.mark.slow
def test_fuzzed_requests_and_raw_bytes_never_break_the_edge(
    fuzzed_edge: EdgeProcess, api_key: str, figure: Callable[..., None]
) -> None:
    auth = bearer(api_key)
    seen: Counter[str] = Counter()
    with grpc.insecure_channel(fuzzed_edge.target) as channel:
        for method, descriptor in REQUESTS.items():
            _fuzz(channel, method, auth, seen, messages(descriptor).map(_serialized))
            _fuzz(channel, method, auth, seen, st.binary(max_size=512))
    assert fuzzed_edge.serving()
    assert fuzzed_edge.proc.poll() is None
    assert not set(seen) & {c.name for c in FORBIDDEN}
    figure(
        "13 fuzzing",
        calls=sum(seen.values()),
        methods=len(REQUESTS),
        unknown_or_internal=0,
        healthy_after=True,
        codes="/".join(f"{k}:{v}" for k, v in seen.most_common()),
    )
