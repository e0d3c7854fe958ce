"""The completion-event publisher: a Lambda on the reports table's stream that puts one
EventBridge event per terminal state written in its region (reportgrid/events.py holds the
schema; docs/EVENTS.md)."""
