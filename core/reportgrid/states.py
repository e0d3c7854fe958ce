"""The report state machine, expressed once.

Every writer (workers, the edge's cancel, the multi-region standby) derives its DynamoDB
condition expression from `TRANSITIONS` through `transition_condition`, so an illegal
transition cannot be written however the writes interleave.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from reportgrid.errors import IllegalTransition


class State(enum.StrEnum):
    """Stored as these strings in the `state` attribute."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL: Final = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED, State.EXPIRED})

# `None` is "no record yet": the edge accepted the task but nothing has been written.
# RUNNING -> RUNNING is a lease takeover (the previous worker's lease expired) and a lease
# renewal; its writer adds a condition on the lease and on the holder.
TRANSITIONS: Final[Mapping[State | None, frozenset[State]]] = {
    None: frozenset({State.PENDING, State.RUNNING, State.FAILED, State.CANCELLED}),
    State.PENDING: frozenset({State.PENDING, State.RUNNING, State.FAILED, State.CANCELLED}),
    State.RUNNING: frozenset({State.RUNNING, State.SUCCEEDED, State.FAILED, State.CANCELLED}),
    State.SUCCEEDED: frozenset({State.EXPIRED}),
    State.FAILED: frozenset({State.EXPIRED}),
    State.CANCELLED: frozenset({State.EXPIRED}),
    State.EXPIRED: frozenset(),
}

STATE_ATTRIBUTE: Final = "state"


def can_transition(current: State | None, target: State) -> bool:
    return target in TRANSITIONS[current]


def sources_of(target: State) -> frozenset[State | None]:
    """The states (None = no record) from which `target` may be written."""
    return frozenset(src for src, targets in TRANSITIONS.items() if target in targets)


def check_transition(subject: str, current: State | None, target: State) -> None:
    if not can_transition(current, target):
        raise IllegalTransition(subject, current.value if current else None, target.value)


@dataclass(frozen=True, slots=True)
class Condition:
    """A DynamoDB ConditionExpression with its placeholder maps."""

    expression: str
    names: dict[str, str]
    values: dict[str, dict[str, str]]

    def and_(self, other: Condition) -> Condition:
        return Condition(
            f"({self.expression}) AND ({other.expression})",
            {**self.names, **other.names},
            {**self.values, **other.values},
        )


def transition_condition(target: State, *, key_attribute: str = "pk") -> Condition:
    """The condition under which writing `target` is legal, in DynamoDB's low-level form.

    A source of None becomes `attribute_not_exists(<key>)`; the others an IN list on the
    state attribute.
    """
    sources = sources_of(target)
    names = {"#state": STATE_ATTRIBUTE}
    parts: list[str] = []
    if None in sources:
        names["#key"] = key_attribute
        parts.append("attribute_not_exists(#key)")
    states = sorted(s.value for s in sources if s is not None)
    values = {f":src{i}": {"S": value} for i, value in enumerate(states)}
    if states:
        parts.append(f"#state IN ({', '.join(values)})")
    if not parts:
        raise IllegalTransition("report", "ANY", target.value)
    return Condition(" OR ".join(parts), names, values)
