"""The batching producer against a scripted client (the code directly above it)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from grpc_edge.producer import KinesisProducer
from reportgrid.errors import Unavailable


class ScriptedKinesis:
    """Accepts records, except those whose data is in `refuse` (refused `times` times)."""

    def __init__(self, refuse: dict[bytes, int] | None = None, delay: float = 0.0) -> None:
        self.refuse = dict(refuse or {})
        self.delay = delay
        self.calls: list[list[bytes]] = []
        self.stored: list[bytes] = []

    async def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> Any:
        await asyncio.sleep(self.delay)
        self.calls.append([r["Data"] for r in Records])
        results = []
        for record in Records:
            left = self.refuse.get(record["Data"], 0)
            if left:
                self.refuse[record["Data"]] = left - 1
                results.append({"ErrorCode": "ProvisionedThroughputExceededException"})
            else:
                self.stored.append(record["Data"])
                results.append({"SequenceNumber": "1", "ShardId": "s"})
        return {"Records": results}


async def test_concurrent_puts_share_batches_under_load() -> None:
    client = ScriptedKinesis(delay=0.02)
    producer = KinesisProducer(client, "s", linger_seconds=0.001, max_in_flight=1)
    producer.start()
    deadline = time.monotonic() + 5
    await asyncio.gather(*(producer.put(b"%d" % i, str(i), deadline) for i in range(300)))
    await producer.close()
    assert sorted(client.stored) == sorted(b"%d" % i for i in range(300))
    # One call in flight at a time: the records queue up and later batches are larger.
    assert producer.stats.batches < 30
    assert producer.stats.max_batch_size > 50


async def test_batches_respect_the_record_limit() -> None:
    client = ScriptedKinesis(delay=0.01)
    producer = KinesisProducer(client, "s", max_in_flight=1, max_batch_records=7)
    producer.start()
    await asyncio.gather(*(producer.put(b"x", "k", time.monotonic() + 5) for _ in range(50)))
    await producer.close()
    assert max(len(call) for call in client.calls) == 7


async def test_a_refused_record_is_retried_alone_and_its_caller_answered_after() -> None:
    client = ScriptedKinesis(refuse={b"b": 2})
    producer = KinesisProducer(client, "s")
    producer.start()
    deadline = time.monotonic() + 5
    await asyncio.gather(*(producer.put(d, "k", deadline) for d in (b"a", b"b", b"c")))
    await producer.close()
    assert client.stored.count(b"b") == 1
    assert producer.stats.record_retries == 2


async def test_a_record_never_accepted_fails_within_the_deadline() -> None:
    producer = KinesisProducer(ScriptedKinesis(refuse={b"x": 10**6}), "s")
    producer.start()
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await producer.put(b"x", "k", started + 0.3)
    assert time.monotonic() - started < 0.35
    assert producer.stats.records_given_up == 1
    await producer.close()


async def test_a_caller_that_left_is_not_sent() -> None:
    client = ScriptedKinesis(delay=0.05)
    producer = KinesisProducer(client, "s", max_in_flight=1)
    producer.start()
    first = asyncio.ensure_future(producer.put(b"first", "k", time.monotonic() + 5))
    await asyncio.sleep(0.01)  # the first call is in flight
    gone = asyncio.ensure_future(producer.put(b"gone", "k", time.monotonic() + 5))
    await asyncio.sleep(0)
    gone.cancel()
    await first
    await producer.close()
    assert b"gone" not in client.stored
    assert producer.stats.records_abandoned == 1
