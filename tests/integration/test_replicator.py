"""The local global-table emulation converges last-writer-wins, honours lag and pause, and
never sends a change back where it came from."""

from __future__ import annotations

import time
from typing import Any

import pytest

from reportgrid import resources as r
from reportgrid.local.bootstrap import client, table_definition
from reportgrid.local.replicator import GlobalTableReplicator
from reportgrid.local.servers import MotoServer

A, B = "us-east-1", "eu-west-1"


@pytest.fixture
def tables(moto_server: MotoServer) -> dict[str, Any]:
    moto_server.reset()
    ddbs = {}
    for region in (A, B):
        ddbs[region] = client("dynamodb", region, moto_server.endpoint_url)
        ddbs[region].create_table(**table_definition())
    return ddbs


def _put(ddb: Any, pk: str, value: str) -> None:
    ddb.put_item(TableName=r.TABLE_NAME, Item={"pk": {"S": pk}, "v": {"S": value}})


def _get(ddb: Any, pk: str) -> str | None:
    item = ddb.get_item(TableName=r.TABLE_NAME, Key={"pk": {"S": pk}}, ConsistentRead=True)
    return item["Item"]["v"]["S"] if "Item" in item else None


def test_a_write_reaches_the_other_region_once(
    tables: dict[str, Any], moto_server: MotoServer
) -> None:
    replicator = GlobalTableReplicator(moto_server.endpoint_url, [A, B])
    _put(tables[A], "k1", "one")
    replicator.drain()
    assert _get(tables[B], "k1") == "one"

    # The write we made in B comes back on B's stream and is not sent back to A.
    assert replicator.step(now=float("inf")) == 0
    assert replicator.stats.echoes == 1
    assert replicator.stats.applied == 1


def test_conflicting_writes_converge_on_the_last_writer(
    tables: dict[str, Any], moto_server: MotoServer
) -> None:
    replicator = GlobalTableReplicator(moto_server.endpoint_url, [A, B], lag_seconds=60)
    # Given both regions write the same item before either change has replicated
    _put(tables[A], "k", "from-a")
    time.sleep(0.01)
    _put(tables[B], "k", "from-b")
    # When replication delivers both
    replicator.drain()
    # Then both regions hold the later write, and the earlier one was superseded
    assert _get(tables[A], "k") == "from-b"
    assert _get(tables[B], "k") == "from-b"
    assert replicator.stats.superseded == 1


def test_lag_delays_and_pause_holds_delivery(
    tables: dict[str, Any], moto_server: MotoServer
) -> None:
    replicator = GlobalTableReplicator(moto_server.endpoint_url, [A, B], lag_seconds=30)
    _put(tables[A], "k", "v")
    assert replicator.step(now=time.time()) == 0
    assert _get(tables[B], "k") is None
    assert replicator.backlog == 1

    replicator.pause()
    assert replicator.step(now=time.time() + 60) == 0
    assert _get(tables[B], "k") is None

    replicator.resume()
    assert replicator.step(now=time.time() + 60) == 1
    assert _get(tables[B], "k") == "v"


def test_deletes_replicate(tables: dict[str, Any], moto_server: MotoServer) -> None:
    replicator = GlobalTableReplicator(moto_server.endpoint_url, [A, B])
    _put(tables[A], "k", "v")
    replicator.drain()
    tables[B].delete_item(TableName=r.TABLE_NAME, Key={"pk": {"S": "k"}})
    replicator.drain()
    assert _get(tables[A], "k") is None


def test_the_background_thread_replicates(tables: dict[str, Any], moto_server: MotoServer) -> None:
    replicator = GlobalTableReplicator(moto_server.endpoint_url, [A, B], poll_seconds=0.05)
    replicator.start()
    try:
        _put(tables[B], "k", "v")
        deadline = time.monotonic() + 10
        while _get(tables[A], "k") != "v":
            assert time.monotonic() < deadline, "the replicator thread did not deliver"
            time.sleep(0.05)
    finally:
        replicator.stop()


def test_one_region_is_refused(moto_server: MotoServer) -> None:
    with pytest.raises(ValueError, match="two distinct regions"):
        GlobalTableReplicator(moto_server.endpoint_url, [A, A])
