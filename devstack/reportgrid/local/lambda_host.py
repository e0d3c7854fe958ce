"""A Lambda execution environment on this machine: one function, run from its synthesized
asset in its own process, under its runtime's Python with nothing else on the path.

The host process is started with `python3.X -I -S` (isolated: no PYTHONPATH, no site-
packages, no current directory on sys.path); its bootstrap puts the asset first on sys.path,
as Lambda puts /var/task, imports the template's handler once (the cold start) and then
serves invocations: an event in on stdin, the handler's result (or its error) out on a pipe
of its own, so the handler's stdout and stderr stay its logs. The environment is the
template's variables, resolved to the local region, plus what the Lambda runtime sets.

As in Lambda, an invocation that outlives the function's timeout is stopped: the process is
killed, the invocation fails with "Task timed out after N seconds", and the next one starts
a new environment (a cold start). A handler that raises, or a process that dies, fails the
invocation the same way; the event source decides what to retry.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Final

from reportgrid.local.deployed import LambdaFunction
from reportgrid.resources import ENV as E

log = logging.getLogger(__name__)

PYTHON_RUNTIME: Final = re.compile(r"^python(\d+)\.(\d+)$")
# How long a cold start (the handler's import) may take before the invocation fails.
INIT_TIMEOUT_SECONDS: Final = 60.0
EXIT_ERROR: Final = "Runtime.ExitError"
# Where Lambda's daemon listens is 169.254.79.129:2000; here nothing does.
LOCAL_XRAY_DAEMON_ADDRESS: Final = "127.0.0.1:2000"
# The IAM enforcement spec the bootstrap installs (reportgrid.local.iam.enforce.spec).
IAM_SPEC_VARIABLE: Final = "REPORTGRID_LOCAL_IAM"

# Runs in the host under -I -S. The fd in argv[3] carries results; stdin carries events.
_BOOTSTRAP: Final = r"""
import importlib, json, os, sys, time, traceback
asset, handler_name, results_fd = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, asset)
# Under the function's execution role (reportgrid/local/iam): the hook goes in, then the
# dev stack leaves sys.path again, before the handler is imported.
iam = os.environ.pop("REPORTGRID_LOCAL_IAM", "")
if iam:
    sys.path.append(json.loads(iam)["source"])
    import reportgrid.local.iam.enforce as enforce
    enforce.install_from_spec(iam)
    enforce.hide_self()
results = os.fdopen(results_fd, "w", buffering=1)
module_name, _, attribute = handler_name.rpartition(".")

class Context:
    def __init__(self, request):
        self.aws_request_id = request["request_id"]
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
        self.invoked_function_arn = request["function_arn"]
        self.log_group_name = "/aws/lambda/" + self.function_name
        self.log_stream_name = "local"
        self._deadline = request["deadline"]
    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.time()) * 1000))

def error(exc):
    return {"ok": False, "errorType": type(exc).__name__, "errorMessage": str(exc),
            "stackTrace": traceback.format_exception(exc)}

try:
    handler = getattr(importlib.import_module(module_name), attribute)
except BaseException as exc:  # an init error, as Runtime.ImportModuleError
    results.write(json.dumps({"init": error(exc)}) + "\n")
    sys.exit(1)
results.write(json.dumps({"init": {"ok": True}}) + "\n")
for line in sys.stdin:
    request = json.loads(line)
    # Lambda sets the trace header per invocation; not sampled, so nothing is sent.
    os.environ["_X_AMZN_TRACE_ID"] = request["trace_id"]
    try:
        reply = {"ok": True, "response": handler(request["event"], Context(request))}
    except Exception as exc:
        traceback.print_exc()
        reply = error(exc)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        results.write(json.dumps(reply, default=str) + "\n")
    except BrokenPipeError:  # the host stopped (or lost) this environment
        sys.exit(0)
"""


class FunctionError(RuntimeError):
    """The invocation failed: the handler raised, timed out, or its process died."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type


def runtime_python(runtime: str, find: Callable[[int, int], Path]) -> Path:
    match = PYTHON_RUNTIME.match(runtime)
    if not match:
        raise FunctionError("Runtime.InvalidRuntime", f"{runtime} is not a Python runtime")
    return find(int(match[1]), int(match[2]))


class LambdaHost:
    """Invokes one function; callable as `handler(event, context)` for an event source."""

    def __init__(
        self,
        function: LambdaFunction,
        *,
        python: Path,
        environment: Mapping[str, str],
        function_arn: str,
        log_file: Path,
        tmp_dir: Path,
    ) -> None:
        self.function = function
        self.python = python
        self.function_arn = function_arn
        self.environment = dict(environment)
        self.log_file = log_file
        self.tmp_dir = tmp_dir
        self.cold_starts = 0
        self._process: subprocess.Popen[str] | None = None
        self._results: IO[str] | None = None
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], _context: object = None) -> Any:
        return self.invoke(event)

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._lock:
            self._ensure_started()
            assert self._process is not None
            assert self._process.stdin is not None
            timeout = float(self.function.timeout_seconds)
            request = {
                "event": event,
                "request_id": str(uuid.uuid4()),
                "function_arn": self.function_arn,
                "deadline": time.time() + timeout,
                "trace_id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
            }
            try:
                self._process.stdin.write(json.dumps(request) + "\n")
                self._process.stdin.flush()
            except BrokenPipeError:
                self._reset()
                raise FunctionError(EXIT_ERROR, "the runtime exited") from None
            reply = self._read(timeout)
            if reply is None:
                self._reset()
                raise FunctionError(
                    "Sandbox.Timedout", f"Task timed out after {timeout:.2f} seconds"
                )
            if not reply["ok"]:
                if reply["errorType"] == EXIT_ERROR:
                    self._reset()  # the environment is gone; the next one is a cold start
                raise FunctionError(reply["errorType"], reply["errorMessage"])
            return reply["response"]

    def _ensure_started(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self._reset()
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe()
        logs = self.log_file.open("a")
        try:
            self._process = subprocess.Popen(
                [
                    str(self.python),
                    "-I",
                    "-S",
                    "-u",
                    "-c",
                    _BOOTSTRAP,
                    str(self.function.asset_dir),
                    self.function.handler,
                    str(write_fd),
                ],
                cwd=self.function.asset_dir,
                env=self._runtime_environment(),
                stdin=subprocess.PIPE,
                stdout=logs,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                text=True,
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
            logs.close()
        self._results = os.fdopen(read_fd, "r")
        self.cold_starts += 1
        init = self._read(INIT_TIMEOUT_SECONDS)
        if init is None or not init.get("init", {}).get("ok"):
            detail = (init or {}).get("init", {})
            self._reset()
            raise FunctionError(
                "Runtime.ImportModuleError",
                f"{self.function.handler}: {detail.get('errorType', 'no answer')}: "
                f"{detail.get('errorMessage', f'see {self.log_file}')}",
            )

    def _runtime_environment(self) -> dict[str, str]:
        """The template's variables and what the Lambda runtime itself sets (the X-Ray
        daemon's address only with active tracing, as Lambda does; no daemon listens here,
        so the function's own segment is lost, and what the code uploads through the API
        reaches the moto server)."""
        tracing = (
            {E.XRAY_DAEMON_ADDRESS: LOCAL_XRAY_DAEMON_ADDRESS}
            if self.function.active_tracing
            else {}
        )
        return {
            **self.environment,
            **tracing,
            "AWS_LAMBDA_FUNCTION_NAME": self.function.logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.function.memory_mib),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{self.function.runtime}",
            "LAMBDA_TASK_ROOT": str(self.function.asset_dir),
            "TMPDIR": str(self.tmp_dir),
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def _read(self, timeout: float) -> dict[str, Any] | None:
        assert self._results is not None
        ready, _, _ = select.select([self._results], [], [], timeout)
        if not ready:
            return None
        line = self._results.readline()
        if not line:
            return {"ok": False, "errorType": EXIT_ERROR, "errorMessage": "the runtime exited"}
        reply: dict[str, Any] = json.loads(line)
        return reply

    def _reset(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            if self._process.stdin is not None:
                self._process.stdin.close()
        if self._results is not None:
            self._results.close()
        self._process = None
        self._results = None

    def close(self) -> None:
        with self._lock:
            self._reset()
