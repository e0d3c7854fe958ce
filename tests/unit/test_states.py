"""The state machine: legal transitions only, expressed as DynamoDB conditions."""

from __future__ import annotations

import pytest

from reportgrid.errors import IllegalTransition
from reportgrid.states import (
    TERMINAL,
    TRANSITIONS,
    State,
    can_transition,
    check_transition,
    sources_of,
    transition_condition,
)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (None, State.PENDING),
        (None, State.RUNNING),
        (State.PENDING, State.RUNNING),
        (State.RUNNING, State.SUCCEEDED),
        (State.RUNNING, State.FAILED),
        (State.RUNNING, State.CANCELLED),
        (State.PENDING, State.CANCELLED),
        (State.RUNNING, State.RUNNING),
        (State.SUCCEEDED, State.EXPIRED),
    ],
)
def test_legal_transitions(current: State | None, target: State) -> None:
    assert can_transition(current, target)
    check_transition("r", current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (State.SUCCEEDED, State.RUNNING),
        (State.FAILED, State.SUCCEEDED),
        (State.CANCELLED, State.RUNNING),
        (State.SUCCEEDED, State.FAILED),
        (State.RUNNING, State.PENDING),
        (State.EXPIRED, State.SUCCEEDED),
        (None, State.SUCCEEDED),
        (None, State.EXPIRED),
    ],
)
def test_illegal_transitions_raise_naming_both_states(current: State | None, target: State) -> None:
    assert not can_transition(current, target)
    with pytest.raises(IllegalTransition) as caught:
        check_transition("rpt_x", current, target)
    assert target.value in caught.value.message
    assert (current.value if current else "NONE") in caught.value.message


def test_terminal_states_only_expire() -> None:
    for state in TERMINAL:
        assert TRANSITIONS[state] <= {State.EXPIRED}
        assert state.terminal


def test_condition_for_succeeded_requires_running() -> None:
    cond = transition_condition(State.SUCCEEDED)
    assert cond.expression == "#state IN (:src0)"
    assert cond.values == {":src0": {"S": "RUNNING"}}
    assert cond.names == {"#state": "state"}


def test_condition_for_running_allows_a_missing_record() -> None:
    cond = transition_condition(State.RUNNING)
    assert cond.expression.startswith("attribute_not_exists(#key) OR #state IN (")
    assert {v["S"] for v in cond.values.values()} == {"PENDING", "RUNNING"}
    assert sources_of(State.RUNNING) == {None, State.PENDING, State.RUNNING}


def test_conditions_combine() -> None:
    a = transition_condition(State.CANCELLED)
    b = transition_condition(State.SUCCEEDED)
    both = a.and_(b)
    assert both.expression == f"({a.expression}) AND ({b.expression})"
