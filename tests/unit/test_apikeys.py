"""API keys are stored only as hashes and are well-formed."""

from __future__ import annotations

from reportgrid import apikeys


def test_keys_are_random_well_formed_and_never_stored_in_plaintext() -> None:
    key = apikeys.generate_key()
    assert apikeys.well_formed(key)
    assert key != apikeys.generate_key()
    item = apikeys.key_item(key, "acme")
    assert key not in str(item)
    assert item["pk"]["S"] == "apikey#" + apikeys.key_hash(key)
    record = apikeys.record_from_item(item)
    assert (record.tenant, record.revoked, record.name) == ("acme", False, "")
    assert record.prefix == key[: apikeys.PREFIX_CHARS]
    assert apikeys.valid_prefix(record.prefix)
    assert record.expires_ms is None
    assert not record.expired(2**62)


def test_malformed_keys_are_recognised() -> None:
    for bad in ("", "rg_short", "Bearer rg_" + "a" * 43, "xx_" + "a" * 43):
        assert not apikeys.well_formed(bad)
