"""The container health check: `python -m grpc_edge.healthcheck [--port P]` exits 0 when the
local edge answers grpc.health.v1 Check with SERVING, 1 otherwise."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from reportgrid import resources


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grpc_edge.healthcheck")
    default_port = int(os.environ.get(resources.ENV.EDGE_PORT, resources.EDGE_PORT))
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)

    import grpc  # noqa: PLC0415 -- only once the arguments are known good
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    with grpc.insecure_channel(f"127.0.0.1:{args.port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
                health_pb2.HealthCheckRequest(service=""), timeout=args.timeout
            )
        except grpc.RpcError as err:
            print(f"unhealthy: {err.code().name}", file=sys.stderr)
            return 1
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"unhealthy: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
