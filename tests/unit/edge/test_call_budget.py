"""The deadline each call gets (grpc_edge/call.py): the client's, bounded; a default when the
client set none, so no call waits forever on a dependency; a watch's own, longer budget."""

from __future__ import annotations

import time

import pytest

from grpc_edge.call import MAX_CLIENT_DEADLINE_SECONDS, Call, CallBudget
from reportgrid import resources
from reportgrid.settings import load_settings

BUDGET = CallBudget(call_seconds=10.0, watch_seconds=3600.0)


def seconds_left(deadline: float) -> float:
    return deadline - time.monotonic()


@pytest.mark.parametrize(
    ("client_remaining", "long_lived", "expected"),
    [
        (None, False, 10.0),  # no client deadline: the call budget
        (2.5, False, 2.5),  # the client's own, shorter or longer than the budget
        (60.0, False, 60.0),
        (10.0**9, False, MAX_CLIENT_DEADLINE_SECONDS),  # an absurd one is bounded
        (None, True, 3600.0),  # a watch without deadline: the watch budget, not 10 s
        (30.0, True, 30.0),
        (7200.0, True, 3600.0),  # a watch never outlives its own budget
    ],
)
def test_the_deadline_follows_the_client_within_the_budget(
    client_remaining: float | None, long_lived: bool, expected: float
) -> None:
    deadline = BUDGET.deadline(client_remaining, long_lived=long_lived)
    assert seconds_left(deadline) == pytest.approx(expected, abs=0.5)


def test_the_budget_comes_from_the_settings() -> None:
    settings = load_settings(
        {
            resources.ENV.REGION: "eu-west-1",
            resources.ENV.ID_SECRETS: "s" * 32,
            resources.ENV.CALL_BUDGET_SECONDS: "4",
            resources.ENV.MAX_WATCH_SECONDS: "90",
        }
    )
    assert CallBudget.of(settings) == CallBudget(call_seconds=4.0, watch_seconds=90.0)


def test_a_call_knows_what_is_left() -> None:
    call = Call("acme", time.monotonic() + 5)
    assert 4.5 < call.remaining() <= 5
