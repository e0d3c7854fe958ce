"""Schedules (issue 17.3): when a schedule fires, and the report key of each fire.

Only the pure parts exist so far: the expression grammar (cron.py), the fire identity
(fires.py) and a run's decisions about a due schedule (due.py). See docs/SCHEDULES.md for
the design they serve.
"""
