"""What the webhook queue carries, the body a receiver gets, and the retry schedule.

The queue holds two kinds of message: a completion event as the bus's rule puts it (the
EventBridge envelope: "detail-type", "detail", ...), and a retry the function sent itself
(`{"webhook_retry": 1, ...}`), which carries the event, where it goes, the attempt number
and when the first attempt was made.

Why retries are new messages: the schedule is a day of backoff (SQS DelaySeconds, at most
900 s, on a fresh message; the one received is then deleted). Backing off by
ChangeMessageVisibility instead would make every retry a receive of the same message, so
the queue's maxReceiveCount would have to exceed the ~200 attempts of a day and would no
longer move a poison message (one the function cannot handle) to the DLQ after a few
tries (SQS Developer Guide, "Using dead-letter queues": a message goes to the DLQ once its
receive count exceeds maxReceiveCount; Lambda docs "Understanding SQS retries"; the AWS
Architecture Blog's "custom retry mechanism for stateless queue consumers" re-sends with a
delay the same way). Here maxReceiveCount (resources.WEBHOOK_MAX_RECEIVES) guards only
against such failures, and the give-up after the retry window is the function's own send to
the DLQ.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any, Final

from reportgrid import resources

RETRY_MARKER: Final = "webhook_retry"
# Dropped from the body: where the notice goes is not news to the receiver.
PRIVATE_FIELDS: Final = ("notify_url",)


class Malformed(ValueError):
    """A message that is neither a completion event nor one of our retries."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event on its way to one URL (None: not resolved yet, a first attempt)."""

    detail_type: str
    detail: dict[str, Any]
    url: str | None = None
    attempt: int = 0  # attempts made before this one
    first_attempt_ms: int | None = None

    @property
    def tenant(self) -> str:
        return str(self.detail.get("tenant", ""))

    @property
    def event_id(self) -> str:
        return str(self.detail.get("event_id", ""))

    def retry_body(self, *, url: str, first_attempt_ms: int) -> str:
        return json.dumps(
            {
                RETRY_MARKER: 1,
                "detail_type": self.detail_type,
                "detail": self.detail,
                "url": url,
                "attempt": self.attempt + 1,
                "first_attempt_ms": first_attempt_ms,
            },
            separators=(",", ":"),
        )


def parse_message(body: str) -> Delivery:
    try:
        message = json.loads(body)
    except ValueError:
        raise Malformed("not JSON") from None
    if not isinstance(message, dict):
        raise Malformed("not a JSON object")
    if message.get(RETRY_MARKER) == 1:
        try:
            return Delivery(
                detail_type=str(message["detail_type"]),
                detail=dict(message["detail"]),
                url=str(message["url"]),
                attempt=int(message["attempt"]),
                first_attempt_ms=int(message["first_attempt_ms"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise Malformed(f"a retry without {err}") from None
    detail = message.get("detail")
    detail_type = message.get("detail-type")
    if not isinstance(detail, dict) or not isinstance(detail_type, str):
        raise Malformed("not an EventBridge event (no detail-type and detail)")
    if message.get("source") != resources.EVENT_SOURCE:
        raise Malformed(f"not a {resources.EVENT_SOURCE} event")
    return Delivery(detail_type=detail_type, detail=detail)


def payload(delivery: Delivery) -> bytes:
    """The POST body: the event's detail (its schema, reportgrid/events.py) without the
    fields above; no result bytes ever are in it."""
    body = {k: v for k, v in delivery.detail.items() if k not in PRIVATE_FIELDS}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def backoff_seconds(attempt: int, *, base: float, rng: random.Random | None = None) -> int:
    """The delay before retry `attempt` (1 = the first retry): full jitter, uniform in
    0..min(cap, base * 2^(attempt-1)), whole seconds as SQS takes them (AWS Architecture
    Blog, "Exponential backoff and jitter")."""
    ceiling = min(float(resources.MAX_SQS_DELAY_SECONDS), base * 2 ** min(attempt - 1, 32))
    draw = (rng or random).uniform(0, ceiling)
    return min(resources.MAX_SQS_DELAY_SECONDS, round(draw))


def out_of_time(first_attempt_ms: int, now_ms: int, *, window_seconds: float) -> bool:
    """True once the retry window since the first attempt has passed: give up."""
    return now_ms - first_attempt_ms >= window_seconds * 1000


def retry_delay(
    attempt: int,
    *,
    base: float,
    first_attempt_ms: int,
    now_ms: int,
    window_seconds: float,
    rng: random.Random | None = None,
) -> int:
    """The delay before retry `attempt`, never past the end of the retry window: the last
    retry is made at the window's end and a failure then gives up at once, instead of up
    to one whole (15-minute) backoff later."""
    left_ms = first_attempt_ms + window_seconds * 1000 - now_ms
    return min(backoff_seconds(attempt, base=base, rng=rng), max(0, math.ceil(left_ms / 1000)))
