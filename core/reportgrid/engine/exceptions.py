"""Errors the engine raises besides reportgrid.errors.ReportFailure (bad input or params)."""

from __future__ import annotations


class EngineError(Exception):
    """Base of the engine's own control-flow errors."""


class Cancelled(EngineError):
    """The report was cancelled while it ran; the generator stopped at a stage boundary."""
