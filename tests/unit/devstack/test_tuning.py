"""`reportgrid-dev --tune NAME=VALUE`: only the settings of launch.TUNING_OVERRIDES."""

from __future__ import annotations

import pytest

from reportgrid.local.deployed import DeploymentError
from reportgrid.local.launch import TUNING_OVERRIDES, parse_tuning
from reportgrid.resources import ENV


def test_tuning_pairs_are_parsed() -> None:
    assert ENV.WEBHOOK_RETRY_WINDOW_SECONDS in TUNING_OVERRIDES
    tuned = parse_tuning([f"{ENV.WEBHOOK_RETRY_WINDOW_SECONDS}=5", f"{ENV.LOG_LEVEL}=a=b"])
    assert tuned == {ENV.WEBHOOK_RETRY_WINDOW_SECONDS: "5", ENV.LOG_LEVEL: "a=b"}


@pytest.mark.parametrize(
    ("pair", "words"),
    [(f"{ENV.TABLE_NAME}=other", "may not be tuned"), ("novalue", "NAME=VALUE"), ("=1", "NAME")],
)
def test_anything_else_is_refused(pair: str, words: str) -> None:
    with pytest.raises(DeploymentError, match=words):
        parse_tuning([pair])
