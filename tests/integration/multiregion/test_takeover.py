"""The standby worker against two real (moto) regions and the stepped replicator: it takes
over what a lost home region left, leaves alone what the home region finished or deleted,
and when replication is cut and both regions run one report (split brain), the regions
converge on one terminal report with byte-identical results."""

from __future__ import annotations

import time
from typing import Any

from functions.standby.worker import StandbyWorker
from functions.store import now_ms
from reportgrid import intents, resources, tasks
from reportgrid.states import State
from reportgrid.task.v1.task_pb2 import TaskRecord
from tests.integration.multiregion.conftest import LEASE_SECONDS, PEER, Pair, Region, make_task


def _standby(region: Region, *, home_beat_ms: int | None = None) -> StandbyWorker:
    s = region.settings
    return StandbyWorker(
        region.runner("standby"),
        sqs=region.sqs,
        queue_url=region.aws.standby_queue_url,
        concurrency=1,
        lease_seconds=s.worker_lease_seconds,
        grace_seconds=s.mirror_grace_seconds,
        margin_seconds=s.standby_margin_seconds,
        last_beat=lambda _region: home_beat_ms,
        wait_seconds=0,
    )


def _mirrored_message(region: Region, task: TaskRecord) -> dict[str, Any]:
    copy = TaskRecord()
    copy.CopyFrom(task)
    copy.mirrored = True
    region.sqs.send_message(
        QueueUrl=region.aws.standby_queue_url, MessageBody=tasks.encode_text(copy)
    )
    messages = region.sqs.receive_message(
        QueueUrl=region.aws.standby_queue_url, WaitTimeSeconds=2, VisibilityTimeout=30
    )["Messages"]
    assert len(messages) == 1
    message: dict[str, Any] = messages[0]
    return message


def _queue_empty(region: Region) -> bool:
    attrs = region.sqs.get_queue_attributes(
        QueueUrl=region.aws.standby_queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(v == "0" for v in attrs.values())


def test_a_lost_home_s_running_report_is_taken_over_and_records_the_peer(pair: Pair) -> None:
    home, peer = pair.home, pair.peer
    # Given a report the home region's worker claimed and then lost with its region
    task = make_task(home.settings, seed=7, age_seconds=5)
    claim = home.services.store.claim(
        task, owner="lambda:us-east-1:gone", region=home.aws.region, lease_seconds=LEASE_SECONDS
    )
    assert claim.record is not None
    pair.replicator.drain()
    message = _mirrored_message(peer, task)
    standby = _standby(peer)
    # When the standby looks while the lease is live, it waits (and keeps watching)
    assert standby.handle(message) == "waiting"
    # ... and once the lease ran out by more than the margin, it takes over
    time.sleep(LEASE_SECONDS + peer.settings.standby_margin_seconds + 0.2)
    message = peer.sqs.receive_message(
        QueueUrl=peer.aws.standby_queue_url, WaitTimeSeconds=5, VisibilityTimeout=30
    )["Messages"][0]
    assert standby.handle(message) == "ran-succeeded"
    pair.replicator.drain()
    # Then both regions show one SUCCEEDED report, run in the peer, attempt 2
    mine, theirs = peer.services.store.get(task.report_id), home.services.store.get(task.report_id)
    assert mine is not None
    assert mine == theirs
    assert mine.state is State.SUCCEEDED
    assert mine.region == PEER
    assert mine.attempts == claim.record.attempts + 1
    assert _queue_empty(peer)


def test_what_the_home_region_finished_or_deleted_is_dropped(pair: Pair) -> None:
    home, peer = pair.home, pair.peer
    done = make_task(home.settings, seed=1, age_seconds=5)
    deleted = make_task(home.settings, seed=2, age_seconds=5)
    assert home.runner("lambda").run(done).record is not None
    home.ddb.put_item(  # the edge's DeleteReport tombstone
        TableName=resources.TABLE_NAME,
        Item=intents.tombstone_item(deleted.report_id, deleted.tenant, deleted_ms=now_ms()),
    )
    pair.replicator.drain()
    standby = _standby(peer)
    assert standby.handle(_mirrored_message(peer, done)) == "dropped"
    assert standby.handle(_mirrored_message(peer, deleted)) == "dropped"
    # The deleted report gets no item and the finished report is untouched
    assert peer.services.store.get(deleted.report_id) is None
    assert peer.services.store.is_deleted(deleted.report_id)
    record = peer.services.store.get(done.report_id)
    assert record is not None
    assert record.region == home.aws.region
    assert _queue_empty(peer)


def test_a_beating_home_region_keeps_its_own_unstarted_reports(pair: Pair) -> None:
    home, peer = pair.home, pair.peer
    task = make_task(home.settings, seed=3, age_seconds=5)  # past the grace, no record
    standby = _standby(peer, home_beat_ms=now_ms())
    assert standby.handle(_mirrored_message(peer, task)) == "waiting"
    assert peer.services.store.get(task.report_id) is None


def test_split_brain_converges_on_one_report_with_identical_results(pair: Pair) -> None:
    home, peer = pair.home, pair.peer
    # Given replication is cut, and the home region runs the report to completion ...
    pair.replicator.pause()
    task = make_task(home.settings, seed=11, age_seconds=5)
    at_home = home.runner("lambda").run(task).record
    assert at_home is not None
    assert at_home.state is State.SUCCEEDED
    # ... while the peer, which sees neither the record nor a heartbeat, runs it too
    assert _standby(peer).handle(_mirrored_message(peer, task)) == "ran-succeeded"
    in_peer = peer.services.store.get(task.report_id)
    assert in_peer is not None
    assert in_peer.lease_owner != at_home.lease_owner
    # When replication resumes
    pair.replicator.resume()
    pair.replicator.drain()
    # Then both regions hold the same terminal report (last writer wins) ...
    final_home = home.services.store.get(task.report_id)
    final_peer = peer.services.store.get(task.report_id)
    assert final_home == final_peer
    assert final_home is not None
    assert final_home.state is State.SUCCEEDED
    assert final_home.lease_owner == in_peer.lease_owner  # the later write
    # ... and the two runs produced byte-identical results
    assert at_home.result is not None
    assert in_peer.result is not None
    assert at_home.result.sha256 == in_peer.result.sha256
    assert at_home.result.inline_compressed == in_peer.result.inline_compressed
