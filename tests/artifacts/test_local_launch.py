"""The local region reads every process's settings from the synthesized templates: each
container's and function's environment resolves to local values, the event-source mappings
become the local event sources' settings unchanged, and what cannot be resolved, or a local
setting that is not a declared override, is an error naming it (never a silent default)."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reportgrid import resources
from reportgrid.local.deployed import (
    Assembly,
    DeploymentError,
    RegionalTemplate,
    Resolver,
    Unresolvable,
    resolve_all,
)
from reportgrid.local.event_sources import mapping_config
from reportgrid.local.launch import LocalDeployment
from reportgrid.local.scheduler_source import ScheduleSource, last_ran, role_denial, set_clock
from tests.artifacts.conftest import Bundled

REGION = "eu-west-1"
ACCOUNT = "111111111111"  # the test context's (tests/infra/conftest.py)
E = resources.ENV


@pytest.fixture(scope="module")
def template(bundled: Bundled) -> RegionalTemplate:
    return Assembly.read(bundled.outdir).regional(REGION)


def resolver(template: RegionalTemplate) -> Resolver:
    # The local ARN of each secret the template leaves unnamed (prepare() reads them from
    # the local Secrets Manager; here a made-up suffix).
    nameless = {
        logical_id: f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{logical_id}-AbCdEf"
        for logical_id, resource in template.resources.items()
        if resource["Type"] == "AWS::SecretsManager::Secret"
        and "Name" not in resource.get("Properties", {})
    }
    return Resolver(template, account=ACCOUNT, physical=nameless)


def test_every_setting_of_every_process_resolves_locally(template: RegionalTemplate) -> None:
    local = resolver(template)
    containers = template.containers()
    assert set(containers) == {"edge", "worker", "standby"}
    for name, spec in containers.items():
        env = resolve_all(local, dict(spec.environment), name)
        secrets = resolve_all(local, dict(spec.secrets), name)
        assert env[E.REGION] == REGION
        # Queue URLs keep AWS's form: the SDK sends them to the local endpoint all the same.
        assert env[E.HEAVY_QUEUE_URL] == (
            f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{resources.HEAVY_QUEUE_NAME}"
        )
        assert env[E.TASK_STREAM_NAME] == resources.TASK_STREAM_NAME
        assert set(secrets) == {E.ID_SECRETS, E.REDIS_URL}
    functions = template.functions()
    handlers = {f.handler for f in functions.values()}
    assert handlers == {
        "functions.stream_worker.handler.handler",
        "functions.mirror.handler.handler",
        "functions.stream_failures.handler.handler",
        "functions.events.handler.handler",
        "functions.webhooks.handler.handler",
        "functions.scheduler.handler.handler",
    }
    for function in functions.values():
        env = resolve_all(local, dict(function.environment), function.logical_id)
        assert env[E.REGION] == REGION, function.logical_id
        # Every secret a function reads is one of this local region's.
        for name, value in env.items():
            if name.endswith("_SECRET_ARN") or name == E.ID_SECRETS_ARN:
                assert value.startswith(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}"), name
        assert (function.asset_dir / "functions" / "__init__.py").is_file()


def test_the_mappings_become_the_local_event_sources_unchanged(template: RegionalTemplate) -> None:
    stream = template.function_by_handler("functions.stream_worker.handler.handler")
    mapping = template.mapping_of(stream)
    raw = next(
        r["Properties"]
        for r in template.of_type("AWS::Lambda::EventSourceMapping").values()
        if r["Properties"]["FunctionName"] == {"Ref": stream.logical_id}
    )
    config = mapping_config(mapping, stream)
    assert config.batch_size == raw["BatchSize"]
    assert config.max_retry_attempts == raw["MaximumRetryAttempts"]
    assert config.max_record_age_seconds == raw["MaximumRecordAgeInSeconds"]
    assert config.bisect_batch_on_function_error is raw["BisectBatchOnFunctionError"]
    assert config.batching_window_seconds == raw["MaximumBatchingWindowInSeconds"]
    assert config.report_batch_item_failures is True
    assert config.function_timeout_seconds == stream.timeout_seconds
    assert mapping.on_failure is not None
    assert template.resources[mapping.on_failure]["Properties"]["QueueName"] == (
        resources.STREAM_FAILURE_QUEUE_NAME
    )
    drain = template.function_by_handler("functions.stream_failures.handler.handler")
    assert template.mapping_of(drain).source_type == "AWS::SQS::Queue"


def test_an_unresolvable_value_is_an_error_naming_the_variable(template: RegionalTemplate) -> None:
    broken = copy.deepcopy(template.template)
    for resource in broken["Resources"].values():
        if resource["Type"] == "AWS::ECS::TaskDefinition":
            for container in resource["Properties"]["ContainerDefinitions"]:
                container.setdefault("Environment", []).append(
                    {"Name": "REPORTGRID_FROM_ELSEWHERE", "Value": {"Fn::ImportValue": "x"}}
                )
    mutated = RegionalTemplate(
        template.stack, template.region, broken, template.assets, template.image_targets
    )
    spec = mutated.containers()["edge"]
    with pytest.raises(Unresolvable, match="edge REPORTGRID_FROM_ELSEWHERE: Fn::ImportValue x"):
        resolve_all(resolver(mutated), dict(spec.environment), "container edge")
    # A Ref to a resource another stack owns is not silently a name either.
    with pytest.raises(Unresolvable, match="Ref NotInThisStack has no local value"):
        resolver(template).resolve({"Ref": "NotInThisStack"}, "probe")


def test_only_the_declared_local_overrides_are_accepted(template: RegionalTemplate) -> None:
    deployment = LocalDeployment(Path(), template, resolver(template), "http://127.0.0.1:9", {})
    with pytest.raises(DeploymentError, match=r"not a local override: \['REPORTGRID_TABLE_NAME'\]"):
        deployment.container("edge", {E.TABLE_NAME: "elsewhere"})
    with pytest.raises(DeploymentError, match="runs no container 'nope'"):
        deployment.container("nope")


def test_a_container_without_a_python_argv_is_refused(template: RegionalTemplate) -> None:
    broken = copy.deepcopy(template.template)
    for resource in broken["Resources"].values():
        if resource["Type"] == "AWS::ECS::TaskDefinition":
            for container in resource["Properties"]["ContainerDefinitions"]:
                container["Command"] = ["grpc_edge"]
    mutated = RegionalTemplate(
        template.stack, template.region, broken, template.assets, template.image_targets
    )
    deployment = LocalDeployment(Path(), mutated, resolver(mutated), "http://127.0.0.1:9", {})
    with pytest.raises(DeploymentError, match="the image has only `python`"):
        deployment.container("edge")


def test_a_variable_no_setting_reads_stops_the_start(template: RegionalTemplate) -> None:
    # A renamed setting in the CDK (REPORTGRID_TABLE for REPORTGRID_TABLE_NAME) would leave
    # the code on its default in AWS: the local start refuses it, naming the likely one.
    broken = copy.deepcopy(template.template)
    for resource in broken["Resources"].values():
        if resource["Type"] == "AWS::ECS::TaskDefinition":
            for container in resource["Properties"]["ContainerDefinitions"]:
                for variable in container.get("Environment", []):  # the sidecar has none
                    if variable["Name"] == E.TABLE_NAME:
                        variable["Name"] = "REPORTGRID_TABLE"
    mutated = RegionalTemplate(
        template.stack, template.region, broken, template.assets, template.image_targets
    )
    deployment = LocalDeployment(Path(), mutated, resolver(mutated), "http://127.0.0.1:9", {})
    with pytest.raises(
        DeploymentError,
        match=r"container edge: the template sets REPORTGRID_TABLE \(did you mean "
        r"REPORTGRID_TABLE_NAME",
    ):
        deployment.container("edge")


def test_the_scheduled_function_runs_on_the_templates_schedule_by_the_settable_clock(
    template: RegionalTemplate, bundled: Bundled, tmp_path: Path
) -> None:
    # Given the template's one schedule (its function, rate and Input are read from it)
    (schedule,) = template.schedules()
    function = template.functions()[schedule.function]
    assert function.handler == "functions.scheduler.handler.handler"
    assert schedule.enabled
    assert not schedule.flexible_window
    assert function.logical_id not in {m.function for m in template.mappings()}
    # Scheduler's role may invoke that function (judged on the template's policies), and
    # no other
    assert role_denial(bundled.outdir, schedule, region=REGION, physical={}) is None
    other = dataclasses.replace(
        schedule,
        function=template.function_by_handler("functions.webhooks.handler.handler").logical_id,
    )
    denied = role_denial(bundled.outdir, other, region=REGION, physical={})
    assert denied is not None
    assert "may not lambda:InvokeFunction" in denied
    clock = tmp_path / "clock"
    start = datetime(2026, 3, 8, 6, 59, 30, tzinfo=UTC)
    set_clock(clock, start)
    events: list[dict[str, Any]] = []
    source = ScheduleSource(events.append, schedule, region=REGION, clock_file=clock)
    # When the clock stands still, nothing runs; when it moves 3 minutes, three runs do
    assert source.tick() == 0
    set_clock(clock, start + timedelta(minutes=3))
    assert source.tick() == 3
    assert source.tick() == 0  # each minute once
    # Then each with the target's Input, its minute filled in, in order
    assert [e["scheduled_time"] for e in events] == [
        "2026-03-08T07:00:00Z",
        "2026-03-08T07:01:00Z",
        "2026-03-08T07:02:00Z",
    ]
    assert last_ran(clock, REGION, schedule.name) == datetime(2026, 3, 8, 7, 2, tzinfo=UTC)
    # A clock set back runs nothing until it passes the last minute run
    set_clock(clock, start)
    assert source.tick() == 0
    set_clock(clock, datetime(2026, 3, 8, 7, 3, tzinfo=UTC))
    assert source.tick() == 1
    # Without a clock file (or with it removed) it is the wall clock's
    set_clock(clock, None)
    assert source.tick() > 100  # 2026-03-08 is long past: the newest MAX_CATCH_UP run
