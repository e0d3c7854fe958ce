"""The process-wide registry of built-in report kinds.

Adding a kind: write one module here that builds a `KindSpec`, and register it below.
Importing this package is cheap (no DuckDB): the edge imports it to validate requests, and
generators import DuckDB only when they run.
"""

from __future__ import annotations

from reportgrid.engine.kinds import summary, synthetic, timeseries
from reportgrid.engine.registry import Registry

REGISTRY: Registry = Registry()
REGISTRY.register(summary.SPEC)
REGISTRY.register(timeseries.SPEC)
REGISTRY.register(synthetic.SPEC)
REGISTRY.register(synthetic.HEAVY_SPEC)

__all__ = ["REGISTRY"]
