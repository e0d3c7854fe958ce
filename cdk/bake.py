"""The pipeline's bake step: after a region is deployed, watch its page-worthy alarms and the
composite "region unhealthy" for a while; fail at once when one is in ALARM, or when one
does not exist (a name the pipeline knows but the region does not have is a broken check,
not a pass).

    python3 cdk/bake.py --region eu-west-1 --minutes 15 --alarms reportgrid-eu-west-1-EdgeFaults,...

Run by a CodeBuild action in the pipeline (cdk/stacks/pipeline.py) from the repository, so
it uses the standard library and boto3 only (the CodeBuild image's Python has boto3).
Exit status: 0 baked, 1 an alarm fired, 2 an alarm is missing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch.client import CloudWatchClient

# DescribeAlarms takes at most 100 names a call, and returns composite alarms only when
# AlarmTypes asks for them (CloudWatch API reference, DescribeAlarms: "If you omit this
# parameter, only metric alarms are returned").
_NAMES_PER_CALL = 100
_ALARM_TYPES: list[Any] = ["CompositeAlarm", "MetricAlarm"]
CHECK_INTERVAL_SECONDS = 60.0
OK, FIRED, MISSING = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Look:
    firing: dict[str, str]  # name -> the state's reason
    missing: list[str]


def look(cloudwatch: CloudWatchClient, names: Sequence[str]) -> Look:
    states: dict[str, tuple[str, str]] = {}
    for start in range(0, len(names), _NAMES_PER_CALL):
        pages = cloudwatch.get_paginator("describe_alarms").paginate(
            AlarmNames=list(names[start : start + _NAMES_PER_CALL]), AlarmTypes=_ALARM_TYPES
        )
        for page in pages:
            for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
                states[alarm["AlarmName"]] = (alarm["StateValue"], alarm.get("StateReason", ""))
    return Look(
        firing={n: states[n][1] for n in names if n in states and states[n][0] == "ALARM"},
        missing=[n for n in names if n not in states],
    )


def bake(
    cloudwatch: CloudWatchClient,
    names: Sequence[str],
    *,
    minutes: float,
    interval: float = CHECK_INTERVAL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = print,
) -> int:
    """Look now, then every `interval` seconds until `minutes` have passed."""
    deadline = clock() + minutes * 60
    while True:
        seen = look(cloudwatch, names)
        if seen.missing:
            say(f"FAIL: no such alarm: {', '.join(seen.missing)}")
            return MISSING
        if seen.firing:
            for name, reason in seen.firing.items():
                say(f"FAIL: {name} is in ALARM: {reason}")
            return FIRED
        left = deadline - clock()
        if left <= 0:
            say(f"baked: {len(names)} alarms stayed out of ALARM for {minutes:g} minutes")
            return OK
        say(f"{len(names)} alarms out of ALARM; {left / 60:.1f} minutes to go")
        sleep(min(interval, left))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--region", required=True)
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--alarms", required=True, help="comma-separated alarm names")
    parser.add_argument("--endpoint-url", help="another endpoint (tests: the moto server)")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.alarms.split(",") if name.strip()]
    if not names:
        parser.error("--alarms: give at least one alarm name")
    cloudwatch = boto3.client("cloudwatch", region_name=args.region, endpoint_url=args.endpoint_url)
    return bake(cloudwatch, names, minutes=args.minutes)


if __name__ == "__main__":
    sys.exit(main())
