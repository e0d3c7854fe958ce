"""`reportgrid admin` without AWS: its time options, and the one line it prints when the
`admin` extra (boto3 and the server's item schema) is not installed."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from reportgrid import errors
from reportgrid.cli.admin import ADMIN_INSTALL_HINT, parse_seconds, parse_when
from reportgrid.cli.commands import app
from reportgrid.cli.exit_codes import Exit

NOW_MS = 1_800_000_000_000


def test_durations_and_times() -> None:
    assert parse_seconds("90s", "x") == 90
    assert parse_seconds("30d", "x") == 30 * 86_400
    assert parse_seconds("2w", "x") == 14 * 86_400
    assert parse_when("1h", "x", now_ms=NOW_MS) == NOW_MS + 3_600_000
    assert parse_when("1d", "x", now_ms=NOW_MS, ago=True) == NOW_MS - 86_400_000
    assert parse_when("2027-01-15T00:00:00Z", "x", now_ms=NOW_MS) == 1_799_971_200_000
    assert parse_when("2027-01-15", "x", now_ms=NOW_MS) == 1_799_971_200_000  # UTC
    for bad in ("", "1.5d", "-1d", "30 days", "tomorrow"):
        with pytest.raises(errors.InvalidArgument, match="x: "):
            parse_when(bad, "x", now_ms=NOW_MS)


def test_admin_help_needs_nothing_and_commands_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = CliRunner()
    helped = runner.invoke(app, ["admin", "--help"])
    assert helped.exit_code == 0
    for command in ("tenant", "key", "audit"):
        assert command in helped.stdout
    # Given an install without boto3 (None in sys.modules: its import fails)
    monkeypatch.setitem(sys.modules, "boto3", None)
    monkeypatch.delitem(sys.modules, "reportgrid.cli.admin_store", raising=False)
    ran = runner.invoke(app, ["admin", "--region", "us-east-1", "tenant", "list"])
    assert ran.exit_code == Exit.USAGE
    assert ran.stderr.strip() == (
        "reportgrid admin: needs the `admin` extra (boto3 is not installed): " + ADMIN_INSTALL_HINT
    )


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        ("ValidationError", "Stack with id Reportgrid-Data does not exist", "table"),
        ("AccessDenied", "not authorized to perform: cloudformation:DescribeStacks", "refused"),
    ],
)
def test_the_table_falls_back_to_its_fixed_name_only_when_the_stack_is_absent(
    code: str, message: str, expected: str
) -> None:
    import boto3
    from botocore.stub import Stubber

    from reportgrid import resources
    from reportgrid.cli.admin_store import AdminStore, Target

    session = boto3.Session(
        aws_access_key_id="x", aws_secret_access_key="x", region_name="eu-west-1"
    )
    cfn = session.client("cloudformation", region_name="eu-west-1")
    stub = Stubber(cfn)
    stub.add_client_error("describe_stacks", service_error_code=code, service_message=message)
    store = AdminStore(Target(region="eu-west-1"), session=session)
    store._client = lambda service: cfn  # type: ignore[method-assign]
    with stub:
        if expected == "table":
            assert store.table == resources.TABLE_NAME
        else:
            # A refusal is said, not hidden behind the fixed name
            with pytest.raises(errors.Unauthenticated, match="AccessDenied"):
                _ = store.table


def test_webhook_options_are_checked_before_any_aws_call() -> None:
    # No endpoint, region or credentials are reachable here: each refusal is the CLI's own.
    runner = CliRunner()
    where = ["admin", "--region", "us-east-1", "--table", "t"]
    both = runner.invoke(
        app,
        [
            *where,
            "tenant",
            "update",
            "acme",
            "--webhook-url",
            "https://a.example/h",
            "--clear-webhook-url",
        ],
    )
    assert both.exit_code == Exit.USAGE
    assert "not both" in both.stderr
    empty = runner.invoke(app, [*where, "tenant", "update", "acme", "--webhook-url", ""])
    assert empty.exit_code == Exit.USAGE
    assert "--clear-webhook-url" in empty.stderr
    helped = runner.invoke(app, ["admin", "tenant", "webhook-secret", "--help"])
    assert helped.exit_code == 0
    assert "--rotate" in helped.stdout
    assert "--overlap" in helped.stdout


def test_the_default_rotation_overlap_is_the_services() -> None:
    from reportgrid import resources
    from reportgrid.cli.admin import DEFAULT_WEBHOOK_OVERLAP

    seconds = parse_seconds(DEFAULT_WEBHOOK_OVERLAP, "overlap")
    assert seconds == resources.WEBHOOK_ROTATION_OVERLAP_SECONDS
