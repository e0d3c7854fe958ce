"""ListReports' shard merge (grpc_edge/listing.py): the newest matches of all shards make a
page, and each shard's cursor says where its next page starts, so pages cover every report
once."""

from __future__ import annotations

from grpc_edge.listing import ShardMatches, merge
from reportgrid.records import ReportRecord
from reportgrid.states import State


def offer(shard: int, created: list[int], *, exhausted: bool) -> ShardMatches:
    """Matches of one shard, newest first, with sort keys as the tenant index has them."""
    matches = []
    for ms in sorted(created, reverse=True):
        key = f"{ms:013d}#rpt_{shard}_{ms}"
        record = ReportRecord(f"rpt_{shard}_{ms}", "acme", "synthetic", State.PENDING, ms)
        matches.append((key, record))
    return ShardMatches(shard, matches, exhausted)


def created(page: list[ReportRecord]) -> list[int]:
    return [record.created_ms for record in page]


def test_the_page_is_the_newest_of_all_shards_and_cursors_point_past_what_was_taken() -> None:
    # Given shard 0 with everything it has and shard 1 with more to come
    offers = [offer(0, [5, 3, 1], exhausted=True), offer(1, [4, 2], exhausted=False)]
    # When a page of three is merged
    page, cursors = merge(offers, [None, None], 3)
    # Then it holds the newest three, and each shard resumes below the oldest taken from it
    assert created(page) == [5, 4, 3]
    assert cursors == ["0000000000003#rpt_0_3", "0000000000004#rpt_1_4"]


def test_a_shard_whose_every_match_was_taken_and_has_no_more_is_done() -> None:
    offers = [offer(0, [9, 8], exhausted=True), offer(1, [1], exhausted=False)]
    page, cursors = merge(offers, [None, None], 2)
    assert created(page) == [9, 8]
    assert cursors == ["", None]  # shard 1 gave nothing to this page: it starts over


def test_shards_done_before_keep_their_cursor_and_untouched_ones_keep_theirs() -> None:
    # Given shard 0 done on an earlier page and shard 2 whose matches are all older
    earlier = ["", "0000000000050#x", "0000000000040#y"]
    offers = [offer(1, [45, 44], exhausted=False), offer(2, [30], exhausted=True)]
    page, cursors = merge(offers, earlier, 2)
    assert created(page) == [45, 44]
    assert cursors == ["", "0000000000044#rpt_1_44", "0000000000040#y"]


def test_the_last_page_leaves_every_shard_done() -> None:
    offers = [offer(0, [2], exhausted=True), offer(1, [], exhausted=True)]
    page, cursors = merge(offers, [None, None], 50)
    assert created(page) == [2]
    assert cursors == ["", ""]
