"""ListReports' filters, validated: page size, states, kinds, labels, the creation-time
range and the view. Every bad field is named at once (one InvalidArgument with all the
violations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from grpc_edge.tokens import filters_hash
from grpc_edge.views import is_full
from reportgrid import records
from reportgrid.errors import FieldViolation, InvalidArgument
from reportgrid.records import ReportRecord
from reportgrid.states import State
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.validation import label_violations

DEFAULT_PAGE_SIZE: Final = 50
# A larger page_size is read as this (AIP-158: "coerced", not refused).
MAX_PAGE_SIZE: Final = 500
# Above every created_key (13 digits of epoch ms, then the id): "no upper bound".
_NO_UPPER_BOUND: Final = "9" * 14


@dataclass(frozen=True, slots=True)
class ListFilters:
    page_size: int
    states: frozenset[State]  # empty: every state
    kinds: frozenset[str]  # empty: every kind
    created_after: int | None  # epoch ms, inclusive
    created_before: int | None  # epoch ms, exclusive
    # label key -> value, all of which a report must carry (empty: no label filter)
    labels: tuple[tuple[str, str], ...] = ()
    full: bool = False  # REPORT_VIEW_FULL (not bound to page tokens: it selects nothing)

    @classmethod
    def of(cls, request: pb.ListReportsRequest) -> ListFilters:
        """The request's filters; InvalidArgument naming every bad field."""
        violations: list[FieldViolation] = []
        if request.page_size < 0:
            violations.append(
                FieldViolation("page_size", f"must not be negative (0 means {DEFAULT_PAGE_SIZE})")
            )
        states: set[State] = set()
        for index, value in enumerate(request.states):
            state = records.STATE_FROM_PROTO.get(value)
            if state is None:
                violations.append(
                    FieldViolation(f"states[{index}]", f"{value} is not a report state")
                )
            else:
                states.add(state)
        after = _millis(request, "created_after", violations)
        before = _millis(request, "created_before", violations)
        if after is not None and after < 0:
            violations.append(FieldViolation("created_after", "must not be before 1970"))
        if before is not None and before <= 0:
            violations.append(FieldViolation("created_before", "must be after 1970"))
        if after is not None and before is not None and after >= before:
            violations.append(
                FieldViolation("created_before", "must be later than created_after (empty range)")
            )
        violations += label_violations(request.labels)
        full = False
        try:
            full = is_full(request.view)
        except InvalidArgument as err:
            violations += err.violations
        if violations:
            raise InvalidArgument(violations)
        return cls(
            page_size=min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
            states=frozenset(states),
            kinds=frozenset(request.kinds),
            created_after=after,
            created_before=before,
            labels=tuple(sorted(request.labels.items())),
            full=full,
        )

    def digest(self) -> str:
        """What a page token is bound to: a token is only valid with the same filters."""
        parts: list[object] = [
            sorted(self.states),
            sorted(self.kinds),
            self.created_after,
            self.created_before,
        ]
        if self.labels:  # appended only when set: tokens issued without labels stay valid
            parts.append([list(pair) for pair in self.labels])
        return filters_hash(parts)

    @property
    def low(self) -> str:
        """The lowest tenant-index sort key in range (inclusive)."""
        return "0" if self.created_after is None else f"{self.created_after:013d}"

    @property
    def high(self) -> str:
        """The tenant-index sort key every match is below (exclusive)."""
        return _NO_UPPER_BOUND if self.created_before is None else f"{self.created_before:013d}"

    def wanted(self, record: ReportRecord, now_ms: int) -> bool:
        """Does the record pass the kind and state filters? (The time range is the index
        query's key condition, the labels its filter expression.)"""
        if self.kinds and record.kind not in self.kinds:
            return False
        return not self.states or record.effective_state(now_ms) in self.states


def _millis(
    request: pb.ListReportsRequest, name: str, violations: list[FieldViolation]
) -> int | None:
    """A timestamp filter in ms; an out-of-range Timestamp is a field violation."""
    if not request.HasField(name):  # type: ignore[arg-type]
        return None
    try:
        return int(getattr(request, name).ToMilliseconds())
    except ValueError:
        violations.append(FieldViolation(name, "is not a valid timestamp"))
        return None
