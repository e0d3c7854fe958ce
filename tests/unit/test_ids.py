"""Report ids: self-certifying, tenant-bound, deterministic with an idempotency key."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reportgrid.errors import InvalidArgument, NotFound
from reportgrid.ids import ENCODED_LEN, PREFIX, IdCodec, validate_tenant

SECRET = b"s" * 32
codec = IdCodec([SECRET])


def test_new_id_carries_version_region_and_creation_time() -> None:
    rid = codec.new("acme", "eu-west-1", now_ms=1_700_000_000_123)

    assert rid.value.startswith(PREFIX)
    assert len(rid.value) == ENCODED_LEN
    verified = codec.verify("acme", rid.value)
    assert verified == rid
    assert (verified.version, verified.region, verified.created_ms) == (
        1,
        "eu-west-1",
        1_700_000_000_123,
    )
    assert not verified.keyed


def test_unkeyed_ids_are_unique() -> None:
    ids = {codec.new("acme", "us-east-1").value for _ in range(2000)}
    assert len(ids) == 2000


def test_keyed_id_is_a_function_of_tenant_and_key_only() -> None:
    a = codec.new("acme", "us-east-1", idempotency_key="order-42", now_ms=1)
    b = codec.new("acme", "eu-west-1", idempotency_key="order-42", now_ms=999_999)
    other_key = codec.new("acme", "us-east-1", idempotency_key="order-43")
    other_tenant = codec.new("globex", "us-east-1", idempotency_key="order-42")

    assert a == b
    assert a.keyed
    assert a.region is None
    assert a.created_ms is None
    assert len({a.value, other_key.value, other_tenant.value}) == 3


def test_foreign_tenant_id_is_not_found() -> None:
    rid = codec.new("acme", "us-east-1")
    with pytest.raises(NotFound):
        codec.verify("globex", rid.value)


def test_id_from_another_deployment_is_not_found() -> None:
    rid = IdCodec([b"x" * 32]).new("acme", "us-east-1")
    with pytest.raises(NotFound):
        codec.verify("acme", rid.value)


@given(position=st.integers(min_value=len(PREFIX), max_value=ENCODED_LEN - 2))
def test_any_tampered_character_is_not_found(position: int) -> None:
    rid = codec.new("acme", "us-east-1", now_ms=5).value
    flipped = "a" if rid[position] != "a" else "b"
    forged = rid[:position] + flipped + rid[position + 1 :]
    with pytest.raises((NotFound, InvalidArgument)):
        codec.verify("acme", forged)


def test_forged_region_or_time_is_not_found() -> None:
    rid = codec.new("acme", "us-east-1", now_ms=5).value
    raw = bytearray(base64.b32decode(rid[len(PREFIX) :].upper() + "===="))
    raw[9] ^= 0x01  # created_ms, low byte
    forged = PREFIX + base64.b32encode(bytes(raw)).decode().rstrip("=").lower()
    with pytest.raises(NotFound):
        codec.verify("acme", forged)


@pytest.mark.parametrize(
    "value", ["", "rpt_", "hello", "rpt_" + "A" * 52, "rpt_" + "a" * 51, "rpt_" + "1" * 52]
)
def test_malformed_id_is_invalid_argument_naming_the_field(value: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        codec.verify("acme", value)
    assert caught.value.violations[0].field == "report_id"


def test_rotation_old_ids_still_verify_new_ids_use_new_secret() -> None:
    old = codec.new("acme", "us-east-1")
    rotated = IdCodec([b"n" * 32, SECRET])

    assert rotated.verify("acme", old.value) == old
    new = rotated.new("acme", "us-east-1")
    with pytest.raises(NotFound):
        codec.verify("acme", new.value)


def test_codec_rejects_weak_or_missing_secrets() -> None:
    with pytest.raises(ValueError, match="at least one"):
        IdCodec([])
    with pytest.raises(ValueError, match="16 bytes"):
        IdCodec([b"short"])


@pytest.mark.parametrize("key", ["", "has space", "x" * 129, "ünïcode"])
def test_bad_idempotency_key_is_invalid_argument(key: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        codec.new("acme", "us-east-1", idempotency_key=key or " ")
    assert caught.value.violations[0].field == "idempotency_key"


def test_unknown_region_and_bad_tenant_are_rejected() -> None:
    with pytest.raises(ValueError, match="REGION_CODES"):
        codec.new("acme", "moon-1")
    with pytest.raises(ValueError, match="tenant"):
        validate_tenant("a b")
