"""The naive edge: the real edge (grpc_edge's service, interceptors, reads, metrics) with
one change, a producer that calls Kinesis PutRecords once per SubmitReport, awaited in the
request's own task: what a service without batching does. The bench loads it to show what
the batching producer buys.

    python -m bench.naive_edge --port P      (settings from the environment, one process)

It swaps the producer class that grpc_edge.server builds, before building the server. This
lives in bench/ because it exists only to be measured; if the edge grows a producer switch,
this module should use it instead of the swap.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from reportgrid.errors import Unavailable
from reportgrid.settings import load_settings

READY_LINE = "edge ({producer} producer) listening on 127.0.0.1:{port}"


def naive_producer_class() -> type[Any]:
    from grpc_edge.producer import KinesisProducer

    class NaiveProducer(KinesisProducer):
        """One PutRecords call per record, no batching, no background sender."""

        def start(self) -> None:  # nothing runs in the background
            return None

        async def put(self, data: bytes, partition_key: str, deadline: float) -> None:
            self.stats.batches += 1
            self.stats.batch_records += 1
            response = await self._client.put_records(
                StreamName=self._stream,
                Records=[{"Data": data, "PartitionKey": partition_key}],
            )
            if response.get("FailedRecordCount"):
                self.stats.records_given_up += 1
                raise Unavailable("the task log did not accept the report; retry")
            self.stats.records_accepted += 1

        async def close(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 -- base signature
            return None

    return NaiveProducer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.naive_edge", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="only 1 is supported")
    parser.add_argument(
        "--producer",
        choices=("naive", "batching"),
        default="naive",
        help="batching: the edge unchanged (used while grpc_edge has no __main__)",
    )
    args = parser.parse_args(argv)
    if args.workers != 1:
        parser.error("the naive edge runs one process (what the bench measures)")
    import uvloop

    import grpc_edge.server as edge_server

    if args.producer == "naive":
        # build_server() looks the class up in its module at call time.
        setattr(edge_server, "KinesisProducer", naive_producer_class())  # noqa: B010
    settings = load_settings()

    def ready(port: int) -> None:
        print(READY_LINE.format(producer=args.producer, port=port), flush=True)

    return uvloop.run(
        edge_server.serve(settings, host="127.0.0.1", port=args.port, drain_delay=0, on_ready=ready)
    )


if __name__ == "__main__":
    sys.exit(main())
