"""Report ids: self-certifying, tenant-bound, each with its creation time and region."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reportgrid.errors import InvalidArgument, NotFound
from reportgrid.ids import (
    ENCODED_LEN,
    PREFIX,
    IdCodec,
    validate_idempotency_key,
    validate_tenant,
)

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


def test_unkeyed_ids_are_unique() -> None:
    ids = {codec.new("acme", "us-east-1").value for _ in range(2000)}
    assert len(ids) == 2000


def test_every_id_carries_its_time_and_region_and_flags_stay_zero() -> None:
    # Keys no longer shape ids (grpc_edge/idempotency.py keeps a key's id): the flags
    # byte is reserved, and every id says when and where it was accepted.
    for now in (1, 2**48 - 1):
        rid = codec.new("acme", "sa-east-1", now_ms=now)
        raw = base64.b32decode(rid.value[len(PREFIX) :].upper() + "====")
        assert raw[1] == 0
        assert (rid.region, rid.created_ms) == ("sa-east-1", now)


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
        validate_idempotency_key(key)
    assert caught.value.violations[0].field == "idempotency_key"


def test_unknown_region_and_bad_tenant_are_rejected() -> None:
    with pytest.raises(ValueError, match="REGION_CODES"):
        codec.new("acme", "moon-1")
    with pytest.raises(ValueError, match="tenant"):
        validate_tenant("a b")
