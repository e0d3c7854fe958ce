"""Metrics as CloudWatch EMF, aggregated in process and flushed periodically.

The hot path only increments integers in dicts; a background task writes a few EMF JSON
lines a minute to stdout (the awslogs driver ships them; CloudWatch extracts the metrics).
That is far cheaper than one EMF document per request.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import IO, Final

from reportgrid import resources

FLUSH_SECONDS: Final = 60.0
_LATENCY_SAMPLES: Final = 100  # EMF takes at most 100 values per metric per document


class _Reservoir:
    __slots__ = ("samples", "seen")

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.seen = 0

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.samples) < _LATENCY_SAMPLES:
            self.samples.append(value)
        else:
            slot = random.randrange(self.seen)  # noqa: S311 -- sampling, not cryptography
            if slot < _LATENCY_SAMPLES:
                self.samples[slot] = value


class EdgeMetrics:
    def __init__(self, namespace: str = resources.METRICS_NAMESPACE, service: str = "edge") -> None:
        self.namespace = namespace
        self.service = service
        self.requests: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.latency: defaultdict[str, _Reservoir] = defaultdict(_Reservoir)
        # Counters owned by other components, read at flush time: name -> () -> int.
        self.gauges: dict[str, Callable[[], int]] = {}
        self._last_gauges: dict[str, int] = {}
        # Sample buffers owned by other components, drained at flush time (e.g. batch sizes).
        self.samples: dict[str, deque[int]] = {}

    def record(self, method: str, code: str, seconds: float) -> None:
        self.requests[(method, code)] += 1
        self.latency[method].add(seconds * 1000.0)

    def watch_counter(self, name: str, read: Callable[[], int]) -> None:
        """Emit the growth of a monotonic counter (e.g. the producer's retries)."""
        self.gauges[name] = read
        self._last_gauges[name] = read()

    def watch_samples(self, name: str, buffer: deque[int]) -> None:
        self.samples[name] = buffer

    def _document(self, dimensions: dict[str, str], values: dict[str, object]) -> str:
        units = {name: ("Milliseconds" if name.endswith("Ms") else "Count") for name in values}
        return json.dumps(
            {
                "_aws": {
                    "Timestamp": int(time.time() * 1000),
                    "CloudWatchMetrics": [
                        {
                            "Namespace": self.namespace,
                            "Dimensions": [list(dimensions)],
                            "Metrics": [{"Name": n, "Unit": u} for n, u in units.items()],
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
        requests, self.requests = self.requests, defaultdict(int)
        latency, self.latency = self.latency, defaultdict(_Reservoir)
        for (method, code), count in requests.items():
            lines.append(self._document({"Method": method, "Code": code}, {"Requests": count}))
        for method, reservoir in latency.items():
            lines.append(self._document({"Method": method}, {"LatencyMs": reservoir.samples}))
        deltas: dict[str, object] = {}
        for name, read in self.gauges.items():
            value = read()
            delta = value - self._last_gauges.get(name, 0)
            self._last_gauges[name] = value
            if delta:
                deltas[name] = delta
        for name, buffer in self.samples.items():
            values = list(buffer)[-_LATENCY_SAMPLES:]
            buffer.clear()
            if values:
                deltas[name] = values
        if deltas:
            lines.append(self._document({"Service": self.service}, deltas))
        if lines:
            out.write("\n".join(lines) + "\n")
            out.flush()
        return len(lines)
