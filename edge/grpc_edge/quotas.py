"""A tenant's per-submit quotas: their one definition is reportgrid/quotas.py, which the
scheduler applies to each fire as the edge does to each SubmitReport."""

from __future__ import annotations

from reportgrid.quotas import apply_quotas

__all__ = ["apply_quotas"]
