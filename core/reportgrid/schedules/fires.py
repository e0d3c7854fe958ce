"""The identity of one fire: the report a (schedule, fire time) becomes.

Every region or process that fires the same minute derives the same idempotency key, so
the edge's idempotency claim turns a double fire into one report (docs/SCHEDULES.md).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from reportgrid.ids import validate_idempotency_key

# The label every scheduled report carries; its value is the schedule id. CreateSchedule
# is to refuse a template that sets it, so the label always tells the truth.
SCHEDULE_LABEL: Final = "reportgrid-schedule"
# Lowercase so the id is also a valid label value (validation._LABEL_VALUE).
_SCHEDULE_ID: Final = re.compile(r"sch-[0-9a-f]{20}")


def new_schedule_id() -> str:
    return f"sch-{secrets.token_hex(10)}"


def is_schedule_id(text: str) -> bool:
    return _SCHEDULE_ID.fullmatch(text) is not None


def fire_key(schedule_id: str, fire_time: datetime) -> str:
    """The idempotency key of one fire: `sched:<id>:<UTC minute>`."""
    if not is_schedule_id(schedule_id):
        raise ValueError(f"{schedule_id!r} is not a schedule id")
    minute = fire_time.astimezone(UTC).strftime("%Y%m%dT%H%MZ")
    return validate_idempotency_key(f"sched:{schedule_id}:{minute}")


def fire_labels(template_labels: Mapping[str, str], schedule_id: str) -> dict[str, str]:
    """The template's labels plus the schedule label."""
    return {**template_labels, SCHEDULE_LABEL: schedule_id}
