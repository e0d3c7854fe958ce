"""Schedule expressions: 5-field cron in a time zone, or `rate(N minutes|hours|days)`.

No cron library is in the environment, so this is a small parser for the Vixie grammar:
per field a comma list of `*`, `a`, `a-b`, each with an optional `/step`; month and
weekday also take names (JAN..DEC, SUN..SAT); weekday 7 is Sunday too. Day of month and
day of week follow Vixie cron: when both are restricted, a day matching either fires.

Time zones (docs/SCHEDULES.md "DST"): cron is matched against wall-clock time in the
schedule's zone. A wall time skipped by a spring-forward gap does not fire that day; a
wall time repeated by a fall-back fires once, at its first occurrence. A rate ignores
the zone: it is a fixed period in UTC counted from the schedule's anchor.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Bounds of what a schedule may say, so a typo cannot become a schedule that never fires
# or fires every minute for a millennium.
MAX_RATE_MINUTES: Final = 366 * 24 * 60
MAX_EXPRESSION_CHARS: Final = 256
# Longest gap between two fires of any satisfiable cron: "0 0 29 2 *" waits 8 years
# across 2100 (not a leap year). The search gives up after that.
_SEARCH_DAYS: Final = 8 * 366 + 1

_MONTHS: Final = {
    n: i + 1
    for i, n in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_WEEKDAYS: Final = {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_RATE: Final = re.compile(r"rate\(\s*(\d{1,7})\s+(minute|minutes|hour|hours|day|days)\s*\)")
_UNIT_MINUTES: Final = {"minute": 1, "hour": 60, "day": 24 * 60}


class ScheduleExpressionError(ValueError):
    """An expression or time zone that cannot be a schedule; the message names the part."""


class Expression(Protocol):
    def next_fire(self, after: datetime) -> datetime:
        """The first fire time strictly after `after` (aware), in UTC, on a whole minute."""
        ...


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_FIELDS: Final = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day of week", 0, 7, _WEEKDAYS),
)


def _value(text: str, field: _Field) -> int:
    if field.names is not None and text.lower() in field.names:
        return field.names[text.lower()]
    if not text.isdigit():
        raise ScheduleExpressionError(f"{field.name}: {text!r} is not a number")
    number = int(text)
    if not field.low <= number <= field.high:
        raise ScheduleExpressionError(f"{field.name}: {number} is outside {field.low}-{field.high}")
    return number


def _parse_field(text: str, field: _Field) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleExpressionError(f"{field.name}: step {step_text!r} is not 1 or more")
            step = int(step_text)
        if span == "*":
            low, high = field.low, field.high
        elif "-" in span:
            first, _, last = span.partition("-")
            low, high = _value(first, field), _value(last, field)
            if low > high:
                raise ScheduleExpressionError(f"{field.name}: range {span!r} runs backwards")
        else:
            low = _value(span, field)
            # Vixie: `a/step` means a through the field's end.
            high = field.high if step_text else low
        values.update(range(low, high + 1, step))
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool
    zone: ZoneInfo

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def next_fire(self, after: datetime) -> datetime:
        after_utc = after.astimezone(UTC)
        day = after_utc.astimezone(self.zone).date() - timedelta(days=1)
        times = sorted((h, m) for h in self.hours for m in self.minutes)
        for _ in range(_SEARCH_DAYS):
            day += timedelta(days=1)
            if not self._day_matches(day):
                continue
            for hour, minute in times:
                wall = datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.zone)
                fire = wall.astimezone(UTC)
                # A wall time in a DST gap does not survive the round trip: skip it.
                if fire.astimezone(self.zone).replace(tzinfo=None) != wall.replace(tzinfo=None):
                    continue
                if fire > after_utc:
                    return fire
        raise ScheduleExpressionError("the cron expression never fires")


@dataclass(frozen=True, slots=True)
class Rate:
    minutes: int
    anchor: datetime  # UTC, whole minute: the first fire

    def next_fire(self, after: datetime) -> datetime:
        after_utc = after.astimezone(UTC)
        if after_utc < self.anchor:
            return self.anchor
        period = timedelta(minutes=self.minutes)
        return self.anchor + ((after_utc - self.anchor) // period + 1) * period


def parse_zone(name: str) -> ZoneInfo:
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleExpressionError(f"{name!r} is not an IANA time zone") from None


def parse(expression: str, *, zone: str = "UTC", anchor: datetime) -> Cron | Rate:
    """Parse a cron or rate expression. `anchor` (aware) is when a rate starts counting;
    it is floored to the minute. Raises ScheduleExpressionError naming the bad part."""
    text = expression.strip()
    if not text or len(text) > MAX_EXPRESSION_CHARS:
        raise ScheduleExpressionError(f"must be 1 to {MAX_EXPRESSION_CHARS} characters")
    tz = parse_zone(zone)
    if text.startswith("rate"):
        match = _RATE.fullmatch(text)
        if match is None:
            raise ScheduleExpressionError("a rate is `rate(N minutes|hours|days)`")
        minutes = int(match[1]) * _UNIT_MINUTES[match[2].rstrip("s")]
        if not 1 <= minutes <= MAX_RATE_MINUTES:
            raise ScheduleExpressionError(f"a rate is 1 minute to {MAX_RATE_MINUTES // 1440} days")
        start = anchor.astimezone(UTC).replace(second=0, microsecond=0)
        return Rate(minutes, start)
    parts: Sequence[str] = text.split()
    if len(parts) != len(_FIELDS):
        raise ScheduleExpressionError(
            f"a cron expression has 5 fields (minute hour day month weekday), not {len(parts)}"
        )
    sets = [_parse_field(part, field) for part, field in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in sets[4])
    cron = Cron(
        minutes=sets[0],
        hours=sets[1],
        days=sets[2],
        months=sets[3],
        weekdays=weekdays,
        days_restricted=not parts[2].startswith("*"),
        weekdays_restricted=not parts[4].startswith("*"),
        zone=tz,
    )
    # Refuse what can never fire ("0 0 31 2 *") now, not at the first due check.
    cron.next_fire(anchor)
    return cron
