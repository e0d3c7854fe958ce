"""What a client and the service agree on beyond the proto: the port, the keepalive the
edge permits, the largest request, the size of an error message, and the environment the
SDK and CLI read. The service's own definitions (reportgrid/resources.py, limits.py) take
these from here, so the client distribution stays free of the server code."""

from __future__ import annotations

from typing import Final

# The edge's gRPC port (the ALB's target port; `make dev` listens on it locally).
EDGE_PORT: Final = 50051
# The SDK pings this often on an idle channel; the edge permits pings every
# EDGE_MIN_CLIENT_PING_INTERVAL_MS (10 s), well below it, so the SDK never earns
# GOAWAY too_many_pings.
CLIENT_KEEPALIVE_SECONDS: Final = 30
# Kinesis takes at most 1 MiB per record and a task must always fit in one: inline input
# is capped well below that.
MAX_INLINE_INPUT_BYTES: Final = 256 * 1024
# The gRPC receive limit of the edge (and the SDK's send limit): inline input plus room
# for the rest of the request.
MAX_RECEIVE_MESSAGE_BYTES: Final = MAX_INLINE_INPUT_BYTES + 64 * 1024
# An error message (and each field violation's description) is cut to this many bytes.
MAX_ERROR_MESSAGE_BYTES: Final = 1024
# Read by the SDK's users and the `reportgrid` CLI, never by the service.
CLIENT_ENDPOINT_ENV: Final = "REPORTGRID_ENDPOINT"  # host:port[,host:port...]
CLIENT_API_KEY_ENV: Final = "REPORTGRID_API_KEY"
# The google.rpc.ErrorInfo.domain in Report.error (a report that did not succeed).
ERROR_DOMAIN: Final = "reportgrid.io"
