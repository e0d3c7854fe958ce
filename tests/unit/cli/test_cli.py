"""The `reportgrid` commands against a scripted service: output, one-line errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reportgrid import errors
from reportgrid.cli.commands import app, describe_error, describe_params, parse_params
from reportgrid.cli.exit_codes import Exit
from reportgrid.local.servers import free_port
from reportgrid.resources import ENV
from tests.unit.cli.conftest import API_KEY, RESULT, Server


@pytest.fixture
def cli(service: Server) -> CliRunner:
    return CliRunner(env={ENV.CLIENT_ENDPOINT: service.endpoint, ENV.CLIENT_API_KEY: API_KEY})


def test_params_are_json_when_they_parse_else_strings() -> None:
    params = parse_params(
        ["top_n=5", 'group_by=["region"]', "label=east", "flag=true", "empty="],
        '{"top_n": 1, "x": {"y": 2}}',
    )
    assert params == {
        "top_n": 5,
        "group_by": ["region"],
        "label": "east",
        "flag": True,
        "empty": "",
        "x": {"y": 2},
    }
    with pytest.raises(errors.InvalidArgument, match="key=value"):
        parse_params(["novalue"], None)
    with pytest.raises(errors.InvalidArgument, match="JSON object"):
        parse_params([], "[1]")


def test_submit_wait_out_writes_the_report(cli: CliRunner, service: Server, tmp_path: Path) -> None:
    data = tmp_path / "sales.csv"
    data.write_text("region,amount\neu,1\n")
    out = tmp_path / "r.csv"
    result = cli.invoke(
        app,
        [
            "submit",
            "summary",
            "--input",
            str(data),
            "--param",
            "top_n=2",
            "--wait",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == Exit.OK, result.output
    assert result.stdout.strip() == "r1"
    assert out.read_bytes() == RESULT
    request, _ = service.script.submits[0]
    assert dict(request.params) == {"top_n": 2}


def test_json_output_is_machine_readable(cli: CliRunner) -> None:
    submitted = cli.invoke(
        app, ["submit", "summary", "--input-s3", "s3://b/k.csv", "--format", "csv", "--json"]
    )
    assert json.loads(submitted.stdout)["report_id"] == "r1"
    got = cli.invoke(app, ["get", "r1", "--json"])
    assert json.loads(got.stdout)["state"] == "REPORT_STATE_SUCCEEDED"
    listed = cli.invoke(app, ["list", "--json"])
    assert [r["report_id"] for r in json.loads(listed.stdout)] == ["r1"]
    kinds = cli.invoke(app, ["kinds", "--json"])
    assert json.loads(kinds.stdout)[0]["params_schema"]["required"] == ["aggregates"]


@pytest.mark.parametrize(
    ("argv", "code", "status"),
    [
        (["get", "missing"], Exit.NOT_FOUND, "NOT_FOUND"),
        (
            ["submit", "nope", "--input-s3", "s3://b/k", "--format", "csv"],
            Exit.USAGE,
            "INVALID_ARGUMENT",
        ),
        (["download", "missing", "--out", "x.csv"], Exit.NOT_FOUND, "NOT_FOUND"),
    ],
)
def test_errors_are_one_line_with_a_meaningful_exit_code(
    cli: CliRunner, argv: list[str], code: int, status: str
) -> None:
    result = cli.invoke(app, argv)
    assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {status}: ")
    assert "Traceback" not in result.output


def test_a_missing_key_and_a_dead_endpoint_say_what_to_fix(service: Server) -> None:
    no_key = CliRunner(env={ENV.CLIENT_ENDPOINT: service.endpoint, ENV.CLIENT_API_KEY: "rg_x"})
    result = no_key.invoke(app, ["list"])
    assert result.exit_code == Exit.UNAUTHENTICATED
    assert ENV.CLIENT_API_KEY in result.stderr
    dead = CliRunner(env={ENV.CLIENT_ENDPOINT: f"127.0.0.1:{free_port()}"})
    result = dead.invoke(app, ["kinds", "--timeout", "2"])
    assert result.exit_code == Exit.UNAVAILABLE
    assert "make dev" in result.stderr


def test_a_missing_input_file_is_a_usage_error(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["submit", "summary", "--input", str(tmp_path / "none.csv")])
    assert result.exit_code == Exit.USAGE
    assert "none.csv" in result.stderr


def test_kinds_lists_each_parameter(cli: CliRunner) -> None:
    result = cli.invoke(app, ["kinds"])
    assert result.exit_code == 0
    assert "summary" in result.stdout
    assert "aggregates" in result.stdout
    assert "top_n" in result.stdout


def test_describe_params_and_error_mapping() -> None:
    rows = describe_params(
        {
            "required": ["a"],
            "properties": {
                "a": {"type": "array", "items": {"type": "string"}},
                "b": {"type": "integer", "default": 3},
            },
        }
    )
    assert rows[0] == ("a", "array of string", True, "")
    assert rows[1][:3] == ("b", "integer", False)
    assert "default 3" in rows[1][3]
    code, line = describe_error(errors.ResourceExhausted("slow down", retry_after=2.5))
    assert code == Exit.RESOURCE_EXHAUSTED
    assert "retry after 2.5s" in line
