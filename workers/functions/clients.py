"""The AWS clients a worker process uses, built from its settings (endpoint included, so
the local region's moto server works alike). Short timeouts: a stuck call fails as a
transient error instead of eating the Lambda's or the lease's time."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from reportgrid.settings import Settings

_CONFIG = Config(
    connect_timeout=3,
    read_timeout=10,
    retries={"max_attempts": 3, "mode": "standard"},
)


def client(service: str, settings: Settings) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        region_name=settings.region,
        endpoint_url=settings.aws_endpoint_url,
        config=_CONFIG,
    )
