"""Fixtures for `reportgrid admin`: the CLI run against the moto server of the test region
(the operator's credentials are moto's), and an admin store on the same table."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import Result
from typer.testing import CliRunner

from reportgrid.cli.admin_store import AdminStore, Target
from reportgrid.cli.commands import app
from reportgrid.local.bootstrap import RegionResources

Admin = Callable[..., Result]


@pytest.fixture
def target(aws: RegionResources) -> Target:
    return Target(region=aws.region, endpoint_url=aws.endpoint_url, table=aws.table_name)


@pytest.fixture
def store(target: Target) -> AdminStore:
    return AdminStore(target)


@pytest.fixture
def admin(aws: RegionResources) -> Admin:
    """`reportgrid admin --region R --endpoint-url U --table T <args>` (test_admin_cli.py
    checks the table found from the stack outputs)."""
    runner = CliRunner()

    def run(*args: str) -> Result:
        where = ["--region", aws.region, "--endpoint-url", aws.endpoint_url]
        argv = ["admin", *where, "--table", aws.table_name, *args]
        return runner.invoke(app, argv)

    return run
