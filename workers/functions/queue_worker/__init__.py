"""The Fargate worker for heavy reports: `python -m functions.queue_worker`."""
