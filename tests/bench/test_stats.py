"""Percentiles, status bookkeeping and the DATA byte check."""

from __future__ import annotations

import pytest

from bench import stats


def test_nearest_rank_percentiles_are_observed_values() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert stats.percentile(values, 50) == 50
    assert stats.percentile(values, 99) == 99
    assert stats.percentile(values, 99.9) == 100
    assert stats.percentile(values, 100) == 100
    assert stats.percentile([7.0], 99.9) == 7.0


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError, match="no values"):
        stats.percentile([], 50)
    with pytest.raises(ValueError, match="must be in"):
        stats.percentile([1.0], 0)


def test_latency_ms_converts_microseconds_and_sorts() -> None:
    lat = stats.latency_ms([5000, 1000, 3000, 2000, 4000] * 200)
    assert lat["p50"] == 3.0
    assert lat["p90"] == 5.0
    assert lat["max"] == 5.0
    assert stats.latency_ms([]) == {}


def test_status_check_flags_unexpected_and_uncounted_calls() -> None:
    good = stats.StatusCheck({"OK": 10}, frozenset({"OK"}), calls_sent=10)
    assert good.problems == []
    bad = stats.StatusCheck({"OK": 7, "UNAVAILABLE": 2}, frozenset({"OK"}), calls_sent=10)
    assert bad.unexpected == {"UNAVAILABLE": 2}
    assert bad.problems == [
        "unexpected statuses: UNAVAILABLE x2",
        "server counted 9 calls but 10 were sent",
    ]
    allowed = stats.StatusCheck({"OK": 8, "NOT_FOUND": 2}, frozenset({"OK", "NOT_FOUND"}), 10)
    assert allowed.problems == []


def test_merge_counts_sums_one_method_over_workers() -> None:
    workers = [
        {"SubmitReport": {"OK": 3}, "GetReport": {"OK": 100}},
        {"SubmitReport": {"OK": 4, "CANCELLED": 1}},
    ]
    assert stats.merge_counts(workers, "SubmitReport") == {"OK": 7, "CANCELLED": 1}
    assert stats.merge_counts(workers, "ListReports") == {}


def test_replies_with_data_counts_messages_and_leftovers() -> None:
    assert stats.replies_with_data(65 * 1000, 65) == (1000, 0)
    assert stats.replies_with_data(65 * 10 + 3, 65) == (10, 3)
    with pytest.raises(ValueError, match="positive"):
        stats.replies_with_data(10, 0)
