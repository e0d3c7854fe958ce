"""The local EventBridge Scheduler: invokes a function on the schedule the template gives it
(`AWS::Scheduler::Schedule`, a rate), with the target's Input and its context attributes
filled in, once per period of a clock that tests can set.

The clock is the wall clock, unless the clock file (`<state>/clock`, written with
`set_clock`) holds a time: then the clock stands at that time until the file changes. The
source reads the file each tick and invokes once for every period boundary the clock has
passed since its last invocation, in order, so a clock moved forward by five minutes gives
five invocations of a rate(1 minute) schedule (at most MAX_CATCH_UP of them: the older ones
are skipped, as Scheduler drops what it cannot deliver within its retry policy's event age).
A clock moved backwards invokes nothing until it passes the last minute invoked.

Invocations are serialized (the function's reserved concurrency is 1 in the template) and
each runs to its end before the next; one that fails is logged and not repeated (the
function's EventInvokeConfig has retry_attempts 0: the next period's run catches up).
After each, the source writes the minute it invoked for to its `ran` file, so a test can
wait for it.

As in AWS, Scheduler invokes with the schedule's execution role: `role_denial` judges
lambda:InvokeFunction on the function against that role's policies in the template
(reportgrid/local/iam), and a role that may not invoke fails every invocation with an
"iam: denied" line instead of running the function.

Only what the deployed schedule uses is supported: a rate expression and a flexible window
that is OFF; anything else is a DeploymentError naming the schedule.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from reportgrid.local.bootstrap import LOCAL_ACCOUNT
from reportgrid.local.deployed import DeploymentError, ScheduledInvocation
from reportgrid.local.iam.policy import Principal, Request, authorize
from reportgrid.local.iam.resolve import Localization
from reportgrid.local.iam.template import load_model

log = logging.getLogger(__name__)

Invoke = Callable[[dict[str, Any]], Any]
# The most invocations one tick makes after the clock jumped (the newest ones).
MAX_CATCH_UP: Final = 180
TICK_SECONDS: Final = 0.2
_RATE: Final = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS: Final = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> int:
    """The period of a Scheduler rate expression, in seconds."""
    match = _RATE.match(expression)
    if not match or int(match[1]) < 1:
        raise DeploymentError(f"{expression!r}: the local scheduler runs rate(N unit) only")
    return int(match[1]) * _UNIT_SECONDS[match[2].removesuffix("s")]


def iso_minute(when: datetime) -> str:
    """Scheduler's <aws.scheduler.scheduled-time>: ISO 8601 in UTC, e.g. 2026-03-08T07:30:00Z."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_clock(clock_file: Path, when: datetime | None) -> None:
    """Stand the local scheduler's clock at `when` (aware), or give it back the wall clock
    (None). Written whole (a rename), so the source never reads half of it."""
    if when is None:
        clock_file.unlink(missing_ok=True)
        return
    if when.tzinfo is None:
        raise ValueError("the clock needs an aware datetime")
    scratch = clock_file.with_name(f".{clock_file.name}.{os.getpid()}")
    scratch.write_text(when.astimezone(UTC).isoformat())
    scratch.replace(clock_file)


def read_clock(clock_file: Path | None) -> datetime:
    """The clock's time now: the file's, else the wall clock's."""
    if clock_file is not None:
        try:
            text = clock_file.read_text().strip()
        except FileNotFoundError:
            text = ""
        if text:
            try:
                when = datetime.fromisoformat(text)
            except ValueError:
                raise DeploymentError(f"{clock_file}: {text!r} is not an ISO 8601 time") from None
            if when.tzinfo is None:
                raise DeploymentError(f"{clock_file}: {text!r} has no time zone")
            return when.astimezone(UTC)
    return datetime.now(UTC)


def ran_file(clock_file: Path, region: str, schedule: str) -> Path:
    """Where the source of `schedule` in `region` writes the last time it invoked for."""
    return clock_file.with_name(f"{clock_file.name}.{region}.{schedule}.ran")


def last_ran(clock_file: Path, region: str, schedule: str) -> datetime | None:
    """The last scheduled time the source invoked for (after the invocation ended)."""
    try:
        return datetime.fromisoformat(ran_file(clock_file, region, schedule).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def fill_input(template: str, *, scheduled_time: datetime, schedule_arn: str) -> dict[str, Any]:
    """The target's Input with Scheduler's context attributes filled in
    (managing-schedule-context-attributes.html), as the event the function receives."""
    text = (
        template.replace("<aws.scheduler.scheduled-time>", iso_minute(scheduled_time))
        .replace("<aws.scheduler.schedule-arn>", schedule_arn)
        .replace("<aws.scheduler.execution-id>", str(uuid.uuid4()))
        .replace("<aws.scheduler.attempt-number>", "1")
    )
    event = json.loads(text)
    if not isinstance(event, dict):
        raise DeploymentError(f"the schedule's Input is not a JSON object: {template!r}")
    return event


def function_arn(region: str, logical_id: str) -> str:
    """A local function's ARN (the one its host gives it: reportgrid/local/launch.py)."""
    return f"arn:aws:lambda:{region}:{LOCAL_ACCOUNT}:function:{logical_id}"


def role_denial(
    assembly: Path,
    schedule: ScheduledInvocation,
    *,
    region: str,
    physical: dict[str, str],
) -> str | None:
    """Why Scheduler's execution role may not invoke the schedule's function (None: it
    may), judged on the template's policies of that role."""
    target = function_arn(region, schedule.function)
    local = Localization(
        region=region,
        physical={
            **physical,
            schedule.function: schedule.function,
            f"{schedule.function}.Arn": target,
        },
    )
    role = load_model(assembly, local).role(logical_id=schedule.role)
    if role.unjudged:
        return f"{role.arn}: {role.unjudged}"
    principal = Principal(role.arn, "scheduler", LOCAL_ACCOUNT, role.tags)
    request = Request("lambda:InvokeFunction", target, principal.context())
    verdict = authorize(principal, role.statements, request)
    if verdict.denial is None:
        return None
    return (
        f"{principal.session_arn} may not lambda:InvokeFunction {target}: "
        + verdict.denial.value.format(action="lambda:InvokeFunction")
    )


class ScheduleSource:
    """Invokes one function on one schedule's rate, by the (settable) clock."""

    def __init__(
        self,
        invoke: Invoke,
        schedule: ScheduledInvocation,
        *,
        region: str,
        clock_file: Path | None,
        denied: str | None = None,
    ) -> None:
        if schedule.flexible_window:
            raise DeploymentError(f"{schedule.name}: a flexible time window is not run locally")
        self.invoke = invoke
        self.schedule = schedule
        self.region = region
        self.clock_file = clock_file
        self.period = rate_seconds(schedule.expression)
        self.schedule_arn = (
            f"arn:aws:scheduler:{region}:{LOCAL_ACCOUNT}:schedule/{schedule.group}/{schedule.name}"
        )
        self.denied = denied  # role_denial's answer: every invocation fails with it
        self._stop = threading.Event()
        # Scheduler's first invocation of a rate schedule: at the first boundary after start.
        self.next_time = self._boundary_after(read_clock(clock_file))

    def _boundary_after(self, when: datetime) -> datetime:
        seconds = int(when.timestamp()) // self.period * self.period + self.period
        return datetime.fromtimestamp(seconds, UTC)

    def due(self, now: datetime) -> list[datetime]:
        """The scheduled times the clock has passed, oldest first (at most MAX_CATCH_UP)."""
        times = []
        when = self.next_time
        while when <= now:
            times.append(when)
            when += timedelta(seconds=self.period)
        if len(times) > MAX_CATCH_UP:
            log.warning(
                "%s: the clock jumped %d periods; invoking the last %d",
                self.schedule.name,
                len(times),
                MAX_CATCH_UP,
            )
            times = times[-MAX_CATCH_UP:]
        return times

    def tick(self) -> int:
        """Invoke for every scheduled time passed; returns how many."""
        times = self.due(read_clock(self.clock_file))
        for when in times:
            if self._stop.is_set():
                break
            event = fill_input(
                self.schedule.input, scheduled_time=when, schedule_arn=self.schedule_arn
            )
            try:
                if self.denied is not None:
                    log.warning("iam: denied lambda:Invoke (Scheduler): %s", self.denied)
                else:
                    self.invoke(event)
            except Exception:  # logged; the next period's run catches up (retries 0)
                log.exception("the handler raised on scheduled time %s", iso_minute(when))
            self.next_time = when + timedelta(seconds=self.period)
            if self.clock_file is not None:
                path = ran_file(self.clock_file, self.region, self.schedule.name)
                scratch = path.with_name(f".{path.name}")
                scratch.write_text(when.isoformat())
                scratch.replace(path)
        return len(times)

    def run(self) -> None:
        log.info(
            "%s: %s -> %s from %s",
            self.schedule.name,
            self.schedule.expression,
            self.schedule.function,
            iso_minute(self.next_time),
        )
        said = ""
        while not self._stop.is_set():
            try:
                self.tick()
                said = ""
            except DeploymentError as error:  # a bad clock file: say so once, keep going
                if str(error) != said:
                    log.error("%s", error)
                    said = str(error)
            self._stop.wait(TICK_SECONDS)

    def stop(self) -> None:
        self._stop.set()
