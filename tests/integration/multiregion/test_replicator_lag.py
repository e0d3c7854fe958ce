"""The replicator records the lag each applied change actually got: at least the lag it
was told to add, and more when it falls behind (what the drill judges its promise by)."""

from __future__ import annotations

import time

from reportgrid import resources
from reportgrid.local.bootstrap import client, table_definition
from reportgrid.local.replicator import GlobalTableReplicator
from reportgrid.local.servers import MotoServer

A, B = "us-east-1", "eu-west-1"


def test_each_applied_change_records_its_lag(moto_server: MotoServer) -> None:
    moto_server.reset()
    ddbs = {r: client("dynamodb", r, moto_server.endpoint_url) for r in (A, B)}
    for ddb in ddbs.values():
        ddb.create_table(**table_definition())
    replicator = GlobalTableReplicator(moto_server.endpoint_url, [A, B], lag_seconds=0.3)
    # Given two writes in A, the second one seen by a replicator that fell 1 s behind
    ddbs[A].put_item(TableName=resources.TABLE_NAME, Item={"pk": {"S": "k1"}})
    deadline = time.monotonic() + 5
    while not replicator.stats.lags and time.monotonic() < deadline:
        replicator.step()
        time.sleep(0.05)
    ddbs[A].put_item(TableName=resources.TABLE_NAME, Item={"pk": {"S": "k2"}})
    time.sleep(1.0)
    replicator.drain()
    # Then each applied write recorded its own lag: the configured one, then the backlog's
    lags = replicator.stats.lags
    assert len(lags) == 2
    assert 0.3 <= lags[0] < 1.0
    assert lags[1] >= 1.0
    summary = replicator.stats.lag_summary()
    assert (summary.items, summary.max) == (2, lags[1])
