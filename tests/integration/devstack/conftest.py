from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.devstack.local_synth import local_assembly


@pytest.fixture(scope="session")
def assembly() -> Path:
    """The cdk.out of the deployment as the local region runs it."""
    return local_assembly()
