"""The context parser (clear errors naming the key) and what the assets ship."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from cdk import artifacts
from cdk.artifacts import ARTIFACTS, export_command, install_command
from cdk.bundling import (
    LAMBDA_ARTIFACT,
    LAMBDA_PYTHON_VERSION,
    LAMBDA_TARGET,
    WHEEL_PLATFORM,
    LocalPythonBundling,
    find_uv,
)
from cdk.config import ConfigError, parse_config
from cdk.constructs.python_function import ASSET_EXCLUDES
from cdk.constructs.service_image import IMAGE_EXCLUDES
from tests.infra.conftest import REPO_ROOT, context

# ---------------------------------------------------------------------------- config


def _config(**overrides: Any) -> Any:
    ctx = context() | {f"reportgrid:{k}": v for k, v in overrides.items()}
    return parse_config(ctx.get)


def test_cdk_json_parses_with_primary_first() -> None:
    config = _config()
    assert config.primary_region == "eu-west-1"
    assert config.peer_region("eu-west-1") == "us-east-1"
    assert config.peer_region("us-east-1") == "eu-west-1"
    assert config.availability_zones("us-east-1") == ("us-east-1a", "us-east-1b", "us-east-1c")


def test_command_line_strings_are_accepted() -> None:
    # `-c key=value` delivers strings: comma lists and JSON maps.
    config = _config(
        regions="eu-west-1,us-east-1",
        trafficDials='{"us-east-1": 0}',
        capacity='{"edge_min_tasks": 2}',
    )
    assert config.regions == ("eu-west-1", "us-east-1")
    assert config.traffic_dial("us-east-1") == 0
    assert config.traffic_dial("eu-west-1") == 100
    assert config.capacity.edge_min_tasks == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"account": "12"}, "reportgrid:account"),
        ({"regions": []}, "reportgrid:regions"),
        ({"regions": ["eu-west-1", "eu-west-1"]}, "listed twice"),
        ({"regions": ["narnia"]}, "not an AWS region"),
        ({"trafficDials": {"eu-west-1": 150}}, "trafficDials.eu-west-1"),
        ({"trafficDials": {"ap-south-1": 10}}, "not one of the regions"),
        ({"capacity": {"edge_min_tasks": 0}}, "edge_min_tasks"),
        ({"capacity": {"bogus": 1}}, "unknown setting(s) bogus"),
        ({"capacity": {"lambda_parallelization_factor": 11}}, "parallelization"),
        ({"certificateArns": {}}, "no certificate for eu-west-1, us-east-1"),
        (
            {
                "certificateArns": {
                    "eu-west-1": "arn:aws:acm:us-east-1:1:certificate/x",
                    "us-east-1": "arn:aws:acm:us-east-1:1:certificate/y",
                }
            },
            "another region",
        ),
        ({"hostedZoneId": "Z123"}, "hostedZoneName"),
        ({"capacity": "{not json"}, "not valid JSON"),
        ({"capacity": {"standby_min_tasks": 0}}, "standby_min_tasks"),
        ({"mirrorGraceSeconds": 901}, "mirrorGraceSeconds"),
        ({"mirrorGraceSeconds": 2.5}, "whole number"),
        ({"mirrorGraceSeconds": "soon"}, "not a number"),
        ({"standbyMarginSeconds": 1}, "standbyMarginSeconds"),
        ({"inputBuckets": ["Not_A_Bucket"]}, "not an S3 bucket name"),
        # Issue 12.9: capacity values AWS would reject at deploy time stop synth instead.
        (
            {"capacity": {"edge_cpu": 3000}},
            "capacity.edge_cpu: 3000 is not a Fargate CPU size; use one of 256, 512, 1024",
        ),
        (
            {"capacity": {"edge_cpu": 1024, "edge_memory_mib": 512}},
            "capacity.edge_memory_mib: 512 MiB is not valid with edge_cpu=1024; "
            "Fargate allows 2048..8192 in steps of 1024 MiB",
        ),
        (
            {"capacity": {"worker_cpu": 256, "worker_memory_mib": 4096}},
            "capacity.worker_memory_mib: 4096 MiB is not valid with worker_cpu=256; "
            "Fargate allows 512, 1024, 2048 MiB",
        ),
        (
            {"capacity": {"worker_cpu": 8192, "worker_memory_mib": 17408}},
            "16384..61440 in steps of 4096",
        ),
        ({"capacity": {"lambda_memory_mib": 127}}, "lambda_memory_mib: 127 .* 128..10240 MB"),
        ({"capacity": {"lambda_memory_mib": 10241}}, "lambda_memory_mib: 10241"),
        ({"capacity": {"nat_gateways": 0}}, "nat_gateways: 0 is out of range; allowed 1..3"),
        ({"capacity": {"cache_max_data_gb": 0}}, "cache_max_data_gb: 0 .* 1..5000 GB"),
        ({"capacity": {"cache_max_data_gb": 5001}}, "cache_max_data_gb: 5001"),
        (
            {"capacity": {"cache_max_ecpu_per_second": 999}},
            "cache_max_ecpu_per_second: 999 .* 1000..15000000 ECPUs per second",
        ),
        ({"capacity": {"cache_max_ecpu_per_second": 15_000_001}}, "cache_max_ecpu_per_second"),
    ],
)
def test_bad_context_names_the_key(overrides: dict[str, Any], message: str) -> None:
    # Literal text, except ".*" which skips the middle of a long message.
    pattern = ".*".join(re.escape(part) for part in message.split(".*"))
    try:
        _config(**overrides)
    except ConfigError as error:
        refused = str(error)
    else:
        pytest.fail(f"{overrides} was accepted: no check refuses it (expected {message!r})")
    assert re.search(pattern, refused), f"{overrides}: {refused!r} does not say {message!r}"


@pytest.mark.parametrize(
    ("cpu", "memory"), [(256, 512), (512, 4096), (1024, 8192), (2048, 16384), (16384, 122880)]
)
def test_every_fargate_size_on_the_table_is_accepted(cpu: int, memory: int) -> None:
    config = _config(capacity={"edge_cpu": cpu, "edge_memory_mib": memory})
    assert (config.capacity.edge_cpu, config.capacity.edge_memory_mib) == (cpu, memory)


def test_capacity_defaults_are_valid() -> None:
    from cdk.config import Capacity

    assert Capacity().nat_gateways == 3


def test_multi_region_timings_default_to_resources_and_accept_overrides() -> None:
    from reportgrid import resources as r

    default = _config()
    assert default.mirror_grace_seconds == r.MIRROR_GRACE_SECONDS
    assert default.standby_margin_seconds == r.STANDBY_MARGIN_SECONDS
    config = _config(mirrorGraceSeconds="60", standbyMarginSeconds=3.5)
    assert (config.mirror_grace_seconds, config.standby_margin_seconds) == (60, 3.5)
    assert _config(inputBuckets="a-bucket,b-bucket").input_buckets == ("a-bucket", "b-bucket")


def test_hosted_zone_replaces_certificate_arns() -> None:
    config = _config(
        certificateArns={},
        hostedZoneId="Z123",
        hostedZoneName="example.com",
        domainName="api.example.com",
    )
    assert config.creates_certificates


# ---------------------------------------------------------------------------- assets


def _staged(excludes: tuple[str, ...], tmp_path: Path) -> set[str]:
    """Paths (relative, files and folders) the CDK stages with these excludes."""
    cdk.FileSystem.copy_directory(
        str(REPO_ROOT),
        str(tmp_path),
        cdk.CopyOptions(exclude=list(excludes), ignore_mode=cdk.IgnoreMode.DOCKER),
    )
    return {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")}


def test_lambda_asset_stages_only_its_code_the_lock_and_the_bundler(tmp_path: Path) -> None:
    staged = _staged(ASSET_EXCLUDES, tmp_path)
    assert set(LAMBDA_ARTIFACT.sources) | set(artifacts.WORKSPACE_FILES) <= staged
    assert "cdk/artifacts.py" in staged  # the Docker fallback runs it
    tops = {path.split("/")[0] for path in staged}
    assert tops == {
        "cdk",
        "client",
        "core",
        "devstack",
        "edge",
        "workers",
        "pyproject.toml",
        "uv.lock",
    }
    # Of the dev stack, the SDK, the CLI and the edge, only their metadata (the lock names them).
    for folder in ("devstack", "edge"):
        assert {p for p in staged if p.startswith(folder + "/")} == {f"{folder}/pyproject.toml"}
    assert not {
        p for p in staged if p.startswith(("client/reportgrid/cli", "client/reportgrid/client"))
    }
    assert not list(tmp_path.rglob("__pycache__"))


def test_image_context_never_copies_the_venv_git_tests_or_the_dev_stack(tmp_path: Path) -> None:
    staged = _staged(IMAGE_EXCLUDES, tmp_path)
    assert {
        "client/reportgrid",
        "core/reportgrid",
        "edge/grpc_edge",
        "workers/functions",
        "cdk/artifacts.py",
        "pyproject.toml",
        "uv.lock",
    } <= staged
    tops = {path.split("/")[0] for path in staged}
    assert not tops & {".venv", ".git", "tests", "cdk.out", ".reportgrid", "node_modules"}
    assert not {p for p in staged if p.startswith("devstack/reportgrid")}
    assert {p for p in staged if p.startswith("cdk/")} == {"cdk/artifacts.py"}


# ---------------------------------------------------------------------------- bundling


def test_the_lambda_installs_locked_runtime_wheels_of_the_workers_only(tmp_path: Path) -> None:
    export = export_command("uv", LAMBDA_ARTIFACT, tmp_path / "r.txt", REPO_ROOT)
    assert export[:3] == ["uv", "export", "--frozen"]
    assert export[export.index("--package") + 1] == "reportgrid-workers"
    assert "--no-default-groups" in export  # no dev/cdk/bench dependencies
    assert "--no-emit-workspace" in export  # our code is copied, not installed
    install = install_command("uv", tmp_path / "r.txt", tmp_path, LAMBDA_TARGET)
    assert install[:3] == ["uv", "pip", "install"]
    assert install[install.index("--python-platform") + 1] == WHEEL_PLATFORM
    assert install[install.index("--python-version") + 1] == LAMBDA_PYTHON_VERSION
    assert install[install.index("--only-binary") + 1] == ":all:"
    assert install[install.index("--target") + 1] == str(tmp_path)


def _exported(artifact: str, tmp_path: Path) -> set[str]:
    # The real `uv export` over the lock (offline, fast): what the artifact would get.
    uv = find_uv()
    assert uv is not None, "uv is needed to bundle (make venv installs it)"
    requirements = tmp_path / f"{artifact}.txt"
    subprocess.run(
        export_command(uv, ARTIFACTS[artifact], requirements, REPO_ROOT),
        check=True,
        capture_output=True,
    )
    return {
        line.split("==")[0].strip().lower()
        for line in requirements.read_text().splitlines()
        if "==" in line
    }


def test_each_artifact_exports_only_its_own_dependencies(tmp_path: Path) -> None:
    dev_tools = {"pytest", "aws-cdk-lib", "moto", "ruff", "mypy", "matplotlib", "typer", "rich"}
    workers = _exported("lambda", tmp_path)
    assert {"grpcio", "boto3", "duckdb", "aws-lambda-powertools", "aws-xray-sdk"} <= workers
    assert not workers & (dev_tools | {"aioboto3", "uvloop", "grpcio-reflection"})
    assert _exported("worker", tmp_path) == workers
    edge = _exported("edge", tmp_path)
    assert {"grpcio", "aioboto3", "redis", "uvloop", "grpcio-reflection"} <= edge
    assert not edge & (dev_tools | {"duckdb"})
    # Our own distributions are never installed from the export: their code is copied.
    assert not (workers | edge) & {"reportgrid", "reportgrid-core", "reportgrid-devstack"}


def test_bundle_copies_the_code_after_installing(tmp_path: Path) -> None:
    # A stand-in `uv` (a shell script) records the commands; the copy is real.
    calls = tmp_path / "calls.txt"
    fake_uv = tmp_path / "uv"
    fake_uv.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake_uv.chmod(0o755)
    out = tmp_path / "out"
    artifacts.build(LAMBDA_ARTIFACT, out, LAMBDA_TARGET, uv=str(fake_uv), project_dir=REPO_ROOT)
    assert (out / "functions" / "__init__.py").is_file()
    assert (out / "reportgrid" / "resources.py").is_file()
    assert (out / "reportgrid" / "v1" / "reports_pb2.py").is_file()
    assert not (out / "reportgrid" / "__init__.py").exists()  # a namespace package, as in dev
    assert not (out / "reportgrid" / "local").exists()
    assert not list(out.rglob("__pycache__"))
    lines = calls.read_text().splitlines()
    assert lines[0].startswith("export ")
    assert lines[1].startswith("pip install ")


def test_a_missing_source_is_a_clear_bundling_error(tmp_path: Path) -> None:
    artifact = artifacts.Artifact("probe", "reportgrid-workers", ("workers/nothing_here",))
    with pytest.raises(artifacts.BundlingError, match="nothing_here is missing"):
        artifacts.copy_code(artifact, tmp_path, project_dir=REPO_ROOT)


def test_local_bundling_declines_without_uv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cdk.bundling.find_uv", lambda: None)
    bundler = LocalPythonBundling(REPO_ROOT)
    assert bundler.try_bundle(str(tmp_path), image=cdk.DockerImage.from_registry("x")) is False
    assert list(tmp_path.iterdir()) == []
