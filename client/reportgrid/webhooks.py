"""Reportgrid webhooks: the signature a delivery carries, and how a receiver checks it.

Every delivery is a POST of a small JSON body (docs/USAGE.md "Webhooks") with

    Reportgrid-Event-Id: <32 hex>        the same for every retry of one report's end
    Reportgrid-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]

where each v1 is HMAC-SHA256, keyed by one of the tenant's signing secrets, over
"<t>.<body>" (the raw body bytes). While a rotated secret's overlap lasts the header
carries one v1 per valid secret, so a receiver that knows either one verifies.

    from reportgrid.webhooks import verify
    event = verify(body, headers["Reportgrid-Signature"], secret)

Standard library only: the service signs with this module too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any, Final

SIGNATURE_HEADER: Final = "Reportgrid-Signature"
EVENT_ID_HEADER: Final = "Reportgrid-Event-Id"
SCHEME: Final = "v1"
DEFAULT_TOLERANCE_SECONDS: Final = 300
# A header longer than this is not one of ours (a few signatures at most).
_MAX_HEADER_CHARS: Final = 1024


class WebhookVerificationError(ValueError):
    """The delivery is not authentic, or too old: answer it 400 and drop it."""


def signature(payload: bytes, secret: str, timestamp: int) -> str:
    """The hex v1 signature of `payload` sent at `timestamp`."""
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(payload: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """The Reportgrid-Signature header value: one v1 per secret, the current one first."""
    if not secrets:
        raise ValueError("sign with at least one secret")
    parts = [f"t={timestamp}", *(f"{SCHEME}={signature(payload, s, timestamp)}" for s in secrets)]
    return ",".join(parts)


def verify(
    payload: bytes,
    header: str,
    secret: str,
    tolerance_s: float = DEFAULT_TOLERANCE_SECONDS,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """The delivered event (the parsed body) if `header` signs `payload` with `secret` and
    its timestamp is within `tolerance_s` of now (a captured delivery cannot be replayed
    later); else WebhookVerificationError. Signatures are compared in constant time."""
    if not header or len(header) > _MAX_HEADER_CHARS:
        raise WebhookVerificationError(f"no usable {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookVerificationError(
                    "the signature's timestamp is not a number"
                ) from None
        elif name == SCHEME:
            candidates.append(value)
    if timestamp is None:
        raise WebhookVerificationError("the signature header has no timestamp (t=)")
    if not candidates:
        raise WebhookVerificationError(f"the signature header has no {SCHEME}= signature")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise WebhookVerificationError(
            f"the signature's timestamp is {abs(current - timestamp):.0f} s away from now "
            f"(tolerance {tolerance_s:g} s)"
        )
    expected = signature(payload, secret, timestamp)
    # Every candidate is compared (no early exit), each in constant time.
    matched = [hmac.compare_digest(expected, candidate) for candidate in candidates]
    if not any(matched):
        raise WebhookVerificationError("no signature matches this secret")
    try:
        event: Any = json.loads(payload)
    except ValueError:
        raise WebhookVerificationError("the body is not JSON") from None
    if not isinstance(event, dict):
        raise WebhookVerificationError("the body is not a JSON object")
    return event
