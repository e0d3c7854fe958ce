"""The stream-failure drain against the real moto server (helpers in helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.stream_failures.helpers import configured_drain
from tests.integration.workers.conftest import Region, region  # noqa: F401 -- fixture


@pytest.fixture
def drain_handler(region: Region) -> Iterator[Any]:  # noqa: F811 -- the fixture imported
    """The real drain handler with clients on the moto server."""
    with configured_drain(region) as handler:
        yield handler
