"""How a client reaches the service: endpoints in failover order, credentials and the channel
options (deadlines, retries, keepalive). The same for both clients; only the channel
module (grpc or grpc.aio) differs, and that is the client's."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import grpc

from reportgrid import errors, wire

SERVICE_NAME: Final = "reportgrid.v1.ReportService"
HEALTH_CHECK_METHOD: Final = "/grpc.health.v1.Health/Check"
HEALTH_CHECK_TIMEOUT: Final = 2.0
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_DOWNLOAD_TIMEOUT: Final = 600.0

# Retried by the channel itself. Every method is safe to retry on UNAVAILABLE: the server
# acknowledges nothing it has not done, and submits carry an idempotency key.
SERVICE_CONFIG: Final = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": SERVICE_NAME}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

# Keepalive: a ping every CLIENT_KEEPALIVE_SECONDS finds a dead connection (a lost region,
# a dropped NAT entry) within that plus the timeout, even while a call waits. The edge
# accepts a ping without data at most every EDGE_MIN_CLIENT_PING_INTERVAL_MS and answers
# faster ones with GOAWAY too_many_pings (grpc doc/keepalive.md), so the interval stays
# above it. Pings keep no stream open through the ALB (it does not count PINGs as
# activity): WatchReport's heartbeats do that.
KEEPALIVE_OPTIONS: Final = (
    ("grpc.keepalive_time_ms", wire.CLIENT_KEEPALIVE_SECONDS * 1000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),  # a quiet watch keeps being checked
)


def channel_options(extra: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The SDK's channel options; an option in `extra` replaces the SDK's of that name."""
    options = dict(
        [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", SERVICE_CONFIG),
            ("grpc.max_receive_message_length", 8 * 1024 * 1024),
            ("grpc.max_send_message_length", wire.MAX_RECEIVE_MESSAGE_BYTES),
            *KEEPALIVE_OPTIONS,
        ]
    )
    options.update(extra)
    return list(options.items())


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach the service: endpoints in failover order, TLS and credentials."""

    endpoints: tuple[str, ...]
    api_key: str | None
    tls: bool
    root_certificates: bytes | None
    options: tuple[tuple[str, Any], ...]

    @classmethod
    def of(
        cls,
        endpoints: str | Sequence[str],
        *,
        api_key: str | None,
        tls: bool,
        root_certificates: bytes | None,
        options: Sequence[tuple[str, Any]],
    ) -> Connection:
        """From a client's arguments: "host:port", a comma-separated list or a sequence."""
        listed = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
        stripped = [e.strip() for e in listed if e.strip()]
        if not stripped:
            raise errors.InvalidArgument.field("endpoint", "give at least one host:port")
        return cls(
            tuple(stripped),
            api_key,
            tls or root_certificates is not None,
            root_certificates,
            tuple(channel_options(options)),
        )

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.root_certificates)

    def candidates(self, current: int, *, advance: bool) -> list[int]:
        """Endpoint indexes to try, in failover order from `current` (or the next one)."""
        count = len(self.endpoints)
        start = current + (1 if advance else 0)
        return [(start + step) % count for step in range(count)]
