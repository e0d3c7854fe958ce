"""The local Lambda execution environment runs a function from its asset directory, in its
own process under the runtime's Python, with nothing but the asset and the standard library
on the path, and stops it as Lambda does: a handler that outlives its timeout is killed and
the next invocation is a cold start. The asset here is a small test function (the host is
the code under test); tests/e2e runs the real functions through it."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from reportgrid.local.deployed import LambdaFunction
from reportgrid.local.interpreters import find_python
from reportgrid.local.lambda_host import FunctionError, LambdaHost

HANDLER = """
import os, sys, time
LOADED = time.time()

def handler(event, context):
    if event.get("raise"):
        raise ValueError("asked to fail")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("exit"):
        os._exit(3)
    return {
        "echo": event,
        "pid": os.getpid(),
        "loaded": LOADED,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "memory": context.memory_limit_in_mb,
        "name": context.function_name,
        "env": os.environ.get("FROM_TEMPLATE"),
        "trace": os.environ.get("_X_AMZN_TRACE_ID", ""),
        "path": sys.path,
        "boto3": __import__("importlib.util").util.find_spec("boto3") is not None,
    }
"""


def host(tmp_path: Path, *, timeout: int = 5, handler: str = "app.handler") -> LambdaHost:
    asset = tmp_path / "asset"
    asset.mkdir(exist_ok=True)
    (asset / "app.py").write_text(textwrap.dedent(HANDLER))
    function = LambdaFunction(
        logical_id="TestFunction",
        handler=handler,
        runtime="python3.12",
        timeout_seconds=timeout,
        memory_mib=256,
        environment={},
        asset_dir=asset,
        role="TestRole",
    )
    return LambdaHost(
        function,
        python=find_python(3, 12),
        environment={"FROM_TEMPLATE": "yes"},
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:TestFunction",
        log_file=tmp_path / "logs" / "fn.log",
        tmp_dir=tmp_path / "tmp",
    )


def test_invokes_under_the_runtime_python_with_only_the_asset(tmp_path: Path) -> None:
    fn = host(tmp_path)
    try:
        reply = fn.invoke({"n": 1})
        again = fn.invoke({"n": 2})
    finally:
        fn.close()
    assert reply["echo"] == {"n": 1}
    assert reply["env"] == "yes"
    assert reply["memory"] == 256
    assert reply["name"] == "TestFunction"
    assert 0 < reply["remaining_ms"] <= 5000
    assert reply["trace"].startswith("Root=1-")
    assert reply["trace"].endswith(";Sampled=0")
    # Nothing from the dev venv: boto3 is installed there, not in this asset.
    assert reply["boto3"] is False
    assert reply["path"][0] == str(tmp_path / "asset")
    assert not [p for p in reply["path"] if "site-packages" in p]
    # One execution environment serves both: one cold start.
    assert again["pid"] == reply["pid"]
    assert again["loaded"] == reply["loaded"]
    assert fn.cold_starts == 1


def test_a_handler_error_fails_the_invocation_and_keeps_the_environment(tmp_path: Path) -> None:
    fn = host(tmp_path)
    try:
        with pytest.raises(FunctionError, match="ValueError: asked to fail"):
            fn.invoke({"raise": True})
        assert fn.invoke({})["echo"] == {}
    finally:
        fn.close()
    assert fn.cold_starts == 1
    assert "asked to fail" in (tmp_path / "logs" / "fn.log").read_text()


def test_a_timed_out_invocation_is_killed_and_the_next_is_a_cold_start(tmp_path: Path) -> None:
    fn = host(tmp_path, timeout=1)
    try:
        first = fn.invoke({})
        started = time.monotonic()
        with pytest.raises(FunctionError, match=r"Task timed out after 1\.00 seconds"):
            fn.invoke({"sleep": 30})
        assert time.monotonic() - started < 10
        after = fn.invoke({})
    finally:
        fn.close()
    assert after["pid"] != first["pid"]
    assert fn.cold_starts == 2


def test_a_process_that_dies_fails_the_invocation(tmp_path: Path) -> None:
    fn = host(tmp_path)
    try:
        with pytest.raises(FunctionError, match=r"Runtime\.ExitError"):
            fn.invoke({"exit": True})
        assert fn.invoke({})["echo"] == {}
    finally:
        fn.close()
    assert fn.cold_starts == 2


def test_a_handler_path_typo_is_an_init_error_naming_it(tmp_path: Path) -> None:
    fn = host(tmp_path, handler="apps.handler")
    with pytest.raises(FunctionError, match=r"ImportModuleError.*apps\.handler.*No module named"):
        fn.invoke({})
    fn.close()
