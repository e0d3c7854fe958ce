"""The moto server as the local region runs it: moto's own WSGI app, one request at a time.

moto's backends are not safe under concurrent requests: Kinesis `put_record` says so in its
source and loses records when two PutRecords calls interleave, and DynamoDB conditional
writes check, then set, so two racing writers can both succeed. Those are exactly the
promises Reportgrid's tests check (nothing acknowledged is lost; one effect per task), so
the local region serializes requests with one lock.

SQS long polls would hold that lock for up to 20 s, so a ReceiveMessage is run as short
polls under the lock with sleeps outside it, until a message arrives or its wait ends —
what a long poll looks like to the client.

moto's Kinesis shard also finds its newest sequence number by listing every record, so each
put costs O(records in the shard) and a stream of 100,000 tasks slows to a crawl; the same
answer comes from the end of its insertion-ordered dict in O(1) (`_constant_time_shards`).

`--shared-table NAME` makes the tables of that name in every region one item store: a write
in one region is in every region when it returns, and a condition is checked against it.
That is what a multi-Region strongly consistent (MRSC) global table promises its callers (the
lease arbiter's table, functions/arbiter.py); requests are serialized, so it is linearizable.

Run as `python -m reportgrid.local.moto_main -H 127.0.0.1 -p PORT [--shared-table NAME]`.
"""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.kinesis.models import Shard
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_RECEIVE_TARGET = "AmazonSQS.ReceiveMessage"
_POLL_SECONDS = 0.05


class SerializedApp:
    """Runs the wrapped WSGI app under one lock; SQS long polls become locked short polls."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET") == _RECEIVE_TARGET:
            return self._receive(environ, start_response)
        return self._locked(environ, start_response)

    def _locked(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        with self._lock:
            # Drain the body under the lock: moto may produce it lazily.
            return list(self._app(environ, start_response))

    def _receive(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        request = json.loads(body or b"{}")
        deadline = time.monotonic() + float(request.get("WaitTimeSeconds") or 0)
        request["WaitTimeSeconds"] = 0
        short = json.dumps(request).encode()
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            captured["args"] = (status, headers, *exc)
            return lambda data: None

        while True:
            attempt = {
                **environ,
                "wsgi.input": io.BytesIO(short),
                "CONTENT_LENGTH": str(len(short)),
            }
            chunks = self._locked(attempt, capture)
            payload = b"".join(chunks)
            if (
                not captured["args"][0].startswith("200")
                or time.monotonic() >= deadline
                or json.loads(payload or b"{}").get("Messages")
            ):
                start_response(*captured["args"])
                return [payload]
            time.sleep(_POLL_SECONDS)


def _constant_time_shards() -> None:
    """Same results as moto's own methods: records are inserted in sequence order."""

    def newest(shard: Shard) -> int:
        return next(reversed(shard.records), 0)

    def oldest(shard: Shard) -> int:
        return next(iter(shard.records), 0)

    Shard.get_max_sequence_number = newest  # type: ignore[method-assign,assignment]
    Shard.get_min_sequence_number = oldest  # type: ignore[method-assign,assignment]


def _share_tables(names: set[str]) -> None:
    """Tables named in `names` share their items with the same-named table of any other
    region of the account (created before or after)."""
    create = DynamoDBBackend.create_table

    def create_shared(self: DynamoDBBackend, name: str, *args: Any, **kwargs: Any) -> Any:
        table = create(self, name, *args, **kwargs)
        if name in names:
            for other in dict.values(dynamodb_backends[self.account_id]):
                twin = other.tables.get(name) if other is not self else None
                if twin is not None:
                    table.items = twin.items  # one item store for every region
                    break
        return table

    DynamoDBBackend.create_table = create_shared  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--shared-table", action="append", default=[], metavar="NAME")
    ns = parser.parse_args(argv)
    _constant_time_shards()
    _share_tables(set(ns.shared_table))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        ns.host, ns.port, SerializedApp(app), threaded=True, request_handler=MotoRequestHandler
    )


if __name__ == "__main__":
    main()
