"""REPORTGRID_EDGE_PRODUCER picks the producer; the naive one makes one PutRecords call per
record and answers Unavailable when Kinesis refuses it. Server options follow the
concurrency setting."""

from __future__ import annotations

import time

import pytest

from grpc_edge.producer import KinesisProducer, NaiveProducer, make_producer
from grpc_edge.server import server_options
from reportgrid import resources
from reportgrid.errors import Unavailable
from reportgrid.settings import load_settings
from tests.unit.edge.test_producer import ScriptedKinesis

BASE_ENV = {
    resources.ENV.REGION: "us-east-1",
    resources.ENV.ID_SECRETS: "0123456789abcdef0123",
}


def test_settings_choose_the_producer() -> None:
    assert load_settings(BASE_ENV).edge_producer == "batching"
    naive = load_settings({**BASE_ENV, resources.ENV.EDGE_PRODUCER: "naive"})
    assert isinstance(make_producer(naive.edge_producer, object(), "s"), NaiveProducer)
    assert isinstance(make_producer("batching", object(), "s"), KinesisProducer)


def test_an_unknown_producer_is_a_settings_error() -> None:
    with pytest.raises(Exception, match=resources.ENV.EDGE_PRODUCER):
        load_settings({**BASE_ENV, resources.ENV.EDGE_PRODUCER: "turbo"})


async def test_naive_producer_calls_put_records_once_per_record() -> None:
    client = ScriptedKinesis(refuse={b"no": 1})
    producer = NaiveProducer(client, "s")
    deadline = time.monotonic() + 5
    await producer.put(b"a", "k1", deadline)
    await producer.put(b"b", "k2", deadline)
    with pytest.raises(Unavailable):
        await producer.put(b"no", "k3", deadline)
    assert client.calls == [[b"a"], [b"b"], [b"no"]]
    assert client.stored == [b"a", b"b"]
    assert (producer.stats.records_accepted, producer.stats.records_given_up) == (2, 1)


def test_pending_request_limits_follow_max_concurrent_rpcs() -> None:
    options = dict(
        server_options(load_settings({**BASE_ENV, resources.ENV.MAX_CONCURRENT_RPCS: "20000"}))
    )
    assert options["grpc.server.max_pending_requests"] == 20_000
    assert options["grpc.server.max_pending_requests_hard_limit"] == 40_000
    small = dict(server_options(load_settings(BASE_ENV)))  # default 2,000
    assert small["grpc.server.max_pending_requests"] >= 1000  # never below grpc's default
