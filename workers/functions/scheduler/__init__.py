"""The scheduler function: invoked once a minute by EventBridge Scheduler, it fires every
Reportgrid schedule due by then (docs/SCHEDULES.md)."""
