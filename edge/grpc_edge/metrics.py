"""Metrics as CloudWatch EMF, aggregated in process and flushed periodically.

The hot path only bumps an integer in a per-method dict and offers the latency to a fixed
size sample; a background task writes a few EMF JSON lines a minute to stdout (the awslogs
driver ships them; CloudWatch extracts the metrics). That is far cheaper than one EMF
document per request.

Names and the dimension the dashboards and alarms read come from reportgrid.resources:
namespace METRICS_NAMESPACE, metric names METRIC.*, dimension {service: SERVICE_EDGE}.
Every metric is emitted with that {service} dimension set; request counts and latencies
are also emitted per method ({service, Method}) and request counts per status
({service, Method, Code}), which the benchmark reads back as per-status counters.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import IO, Final

from reportgrid import resources

M = resources.METRIC
SERVICE: Final = resources.METRIC_SERVICE_DIMENSION
FLUSH_SECONDS: Final = 60.0
_SAMPLES: Final = 100  # EMF takes at most 100 values per metric per document
# Statuses that are our failure, not the caller's: what RequestFaults and the SLOs count.
FAULT_CODES: Final = resources.REQUEST_FAULT_CODES
_MILLISECONDS: Final = frozenset({M.REQUEST_LATENCY})


class Reservoir:
    """A uniform sample of at most 100 values of a stream (reservoir sampling)."""

    __slots__ = ("samples", "seen")

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.seen = 0

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.samples) < _SAMPLES:
            self.samples.append(value)
        else:
            # random() is one C call; randrange is several Python-level ones, per request.
            slot = int(random.random() * self.seen)  # noqa: S311 -- sampling, not cryptography
            if slot < _SAMPLES:
                self.samples[slot] = value

    def take(self) -> list[float]:
        samples, self.samples, self.seen = self.samples, [], 0
        return samples


class MethodMetrics:
    """One method's counts by status and latency sample; the interceptors hold one per
    method, so recording a call is two dict operations and no allocation."""

    __slots__ = ("_service_latency", "codes", "latency", "method")

    def __init__(self, method: str, service_latency: Reservoir) -> None:
        self.method = method
        self.codes: dict[str, int] = {}
        self.latency = Reservoir()
        self._service_latency = service_latency

    def record(self, code: str, seconds: float) -> None:
        codes = self.codes
        codes[code] = codes.get(code, 0) + 1
        ms = seconds * 1000.0
        self.latency.add(ms)
        self._service_latency.add(ms)


class EdgeMetrics:
    def __init__(
        self,
        namespace: str = resources.METRICS_NAMESPACE,
        service: str = resources.SERVICE_EDGE,
    ) -> None:
        self.namespace = namespace
        self.service = service
        self.methods: dict[str, MethodMetrics] = {}
        self._latency = Reservoir()  # every method: the {service} rollup
        # Counters owned by other components, read at flush time: name -> () -> int.
        self.gauges: dict[str, Callable[[], int]] = {}
        self._last_gauges: dict[str, int] = {}
        # Sample buffers owned by other components, drained at flush time (e.g. batch sizes).
        self.samples: dict[str, deque[int]] = {}

    def method(self, name: str) -> MethodMetrics:
        """The recorder of one method (created once, when the server is built)."""
        found = self.methods.get(name)
        if found is None:
            found = self.methods[name] = MethodMetrics(name, self._latency)
        return found

    def record(self, method: str, code: str, seconds: float) -> None:
        self.method(method).record(code, seconds)

    def watch_counter(self, name: str, read: Callable[[], int]) -> None:
        """Emit the growth of a monotonic counter (e.g. the producer's retries)."""
        self.gauges[name] = read
        self._last_gauges[name] = read()

    def watch_samples(self, name: str, buffer: deque[int]) -> None:
        self.samples[name] = buffer

    def _document(
        self,
        dimension_sets: Iterable[list[str]],
        dimensions: dict[str, str],
        values: dict[str, object],
    ) -> str:
        return json.dumps(
            {
                "_aws": {
                    "Timestamp": int(time.time() * 1000),
                    "CloudWatchMetrics": [
                        {
                            "Namespace": self.namespace,
                            "Dimensions": list(dimension_sets),
                            "Metrics": [
                                {
                                    "Name": name,
                                    "Unit": "Milliseconds" if name in _MILLISECONDS else "Count",
                                }
                                for name in values
                            ],
                        }
                    ],
                },
                **dimensions,
                **values,
            },
            separators=(",", ":"),
        )

    def flush(self, out: IO[str] | None = None) -> int:
        """Write and reset what was gathered; return the number of documents."""
        out = out or sys.stdout
        lines: list[str] = []
        service = {SERVICE: self.service}
        faults = 0
        for name, recorder in self.methods.items():
            codes, recorder.codes = recorder.codes, {}
            for code, count in codes.items():
                if code in FAULT_CODES:
                    faults += count
                lines.append(
                    self._document(
                        ([SERVICE], [SERVICE, "Method"], [SERVICE, "Method", "Code"]),
                        {**service, "Method": name, "Code": code},
                        {M.REQUESTS: count},
                    )
                )
            if latency := recorder.latency.take():
                lines.append(
                    self._document(
                        ([SERVICE, "Method"],),
                        {**service, "Method": name},
                        {M.REQUEST_LATENCY: latency},
                    )
                )
        rollup: dict[str, object] = {}
        if latency := self._latency.take():
            rollup[M.REQUEST_LATENCY] = latency
            rollup[M.REQUEST_FAULTS] = faults
        for name, read in self.gauges.items():
            value = read()
            delta = value - self._last_gauges.get(name, 0)
            self._last_gauges[name] = value
            if delta or name in _ALWAYS:
                rollup[name] = delta
        for name, buffer in self.samples.items():
            values = list(buffer)[-_SAMPLES:]
            buffer.clear()
            if values:
                rollup[name] = values
        if rollup:
            lines.append(self._document(([SERVICE],), service, rollup))
        if lines:
            out.write("\n".join(lines) + "\n")
            out.flush()
        return len(lines)


# Emitted even when zero, so alarms on them see data rather than INSUFFICIENT_DATA.
_ALWAYS: Final = frozenset({M.SHED_REQUESTS})
