"""The pipeline (`reportgrid:pipeline`, issue 16): main deploys itself region by region,
bakes each region on its alarms, and every deploy of a region rolls itself back.

The app is built as tests/infra/conftest.py builds it (the same context, Lambda bundling
skipped) plus the pipeline's key and the domain the canary checks TLS against. The plain
app (no key) is conftest's own `synth`, unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import boto3
import pytest
from aws_cdk.assertions import Match, Template
from constructs import Construct

from cdk import bake
from cdk.config import ConfigError, DeployConfig, parse_config
from cdk.constructs import canary_function
from cdk.deployment import PIPELINE_STACK, Deployment, build_deployment, build_stacks
from cdk.stacks.pipeline import PipelineStack
from cdk.stacks.region import rollout
from reportgrid.local.servers import MotoServer
from tests.infra.conftest import (
    ACCOUNT,
    NAG_PROBE_STACK,
    REGIONS,
    REPO_ROOT,
    Synthesized,
    context,
    project_dir,
)

CONNECTION = (
    f"arn:aws:codeconnections:eu-west-1:{ACCOUNT}:connection/"
    + "0" * 8
    + "-0000-0000-0000-00000000000a"
)
REPOSITORY = "example-org/reportgrid"
DOMAIN = "reports.example.com"
BAKE_MINUTES = 20
PRIMARY, OTHER = REGIONS


def pipeline_context(**settings: Any) -> dict[str, Any]:
    return context() | {
        "reportgrid:pipeline": {"connectionArn": CONNECTION, "repository": REPOSITORY} | settings,
        "reportgrid:domainName": DOMAIN,
    }


@dataclass(frozen=True)
class Piped:
    config: DeployConfig
    deployment: Deployment
    pipeline: dict[str, Any]  # the pipeline stack's template
    stage: dict[str, dict[str, Any]]  # stack name -> template, the stacks the pipeline deploys
    files: dict[str, tuple[Path, str]]  # every template of the app -> (file, region)

    def stage_template(self, name: str) -> Template:
        return Template.from_json(self.stage[name])

    @property
    def actions(self) -> list[dict[str, Any]]:
        """The actions of the pipeline, each with its stage's name."""
        (pipeline,) = (
            r["Properties"]
            for r in self.pipeline["Resources"].values()
            if r["Type"] == "AWS::CodePipeline::Pipeline"
        )
        return [
            action | {"Stage": stage["Name"]}
            for stage in pipeline["Stages"]
            for action in stage["Actions"]
        ]

    def action(self, name: str) -> dict[str, Any]:
        (found,) = (a for a in self.actions if a["Name"] == name)
        return found

    def build_spec(self, action: dict[str, Any]) -> dict[str, Any]:
        project = self.pipeline["Resources"][action["Configuration"]["ProjectName"]["Ref"]]
        spec: dict[str, Any] = json.loads(project["Properties"]["Source"]["BuildSpec"])
        return spec | {"_project": project["Properties"]}


def _build(outdir: Path, ctx: dict[str, Any]) -> Piped:
    app = cdk.App(context=ctx, outdir=str(outdir))
    config = parse_config(app.node.try_get_context)
    deployment = build_deployment(app, config, project_dir())
    assembly = app.synth()
    assert deployment.pipeline is not None
    stage = deployment.pipeline.stage.synth()
    files = {
        s.stack_name: (Path(assembly.directory) / s.template_file, s.environment.region)
        for s in assembly.stacks
    }
    files |= {
        s.stack_name: (Path(stage.directory) / s.template_file, s.environment.region)
        for s in stage.stacks
    }
    return Piped(
        config=config,
        deployment=deployment,
        pipeline=dict(assembly.get_stack_artifact(deployment.pipeline.artifact_id).template),
        stage={
            s.stack_name: dict(stage.get_stack_artifact(s.artifact_id).template)
            for s in deployment.stacks
        },
        files=files,
    )


@pytest.fixture(scope="module")
def piped(tmp_path_factory: pytest.TempPathFactory) -> Piped:
    ctx = pipeline_context(bakeMinutes=BAKE_MINUTES, manualApproval=True)
    return _build(tmp_path_factory.mktemp("cdk.out.pipeline"), ctx)


# --- the context key ------------------------------------------------------------------------


def _parse(**pipeline: Any) -> DeployConfig:
    ctx = pipeline_context() | {"reportgrid:pipeline": pipeline}
    return parse_config(ctx.get)


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        ({"repository": REPOSITORY}, r"reportgrid:pipeline\.connectionArn: missing"),
        (
            {"connectionArn": "arn:aws:s3:::bucket", "repository": REPOSITORY},
            r"reportgrid:pipeline\.connectionArn: .* is not a CodeConnections connection ARN",
        ),
        (
            {
                "connectionArn": CONNECTION.replace(ACCOUNT, "222222222222"),
                "repository": REPOSITORY,
            },
            r"reportgrid:pipeline\.connectionArn: the connection is in another account",
        ),
        ({"connectionArn": CONNECTION, "repository": "reportgrid"}, r"\.repository: .* owner/name"),
        (
            {"connectionArn": CONNECTION, "repository": REPOSITORY, "branch": "a..b"},
            r"reportgrid:pipeline\.branch: 'a\.\.b' is not a branch name",
        ),
        (
            {"connectionArn": CONNECTION, "repository": REPOSITORY, "bakeMinutes": -1},
            r"reportgrid:pipeline\.bakeMinutes: -1 must be whole minutes 0\.\.420",
        ),
        (
            {"connectionArn": CONNECTION, "repository": REPOSITORY, "manualApproval": "yes"},
            r"reportgrid:pipeline\.manualApproval: 'yes' must be true or false",
        ),
        (
            {"connectionArn": CONNECTION, "repository": REPOSITORY, "bake": 5},
            r"reportgrid:pipeline: unknown setting\(s\) bake",
        ),
    ],
)
def test_a_bad_pipeline_setting_names_its_key(pipeline: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _parse(**pipeline)


def test_the_pipeline_needs_the_domain_the_canary_checks() -> None:
    ctx = pipeline_context() | {"reportgrid:domainName": ""}
    with pytest.raises(ConfigError, match=r"reportgrid:pipeline: also give reportgrid:domainName"):
        parse_config(ctx.get)


def test_the_pipeline_settings_and_their_defaults() -> None:
    config = parse_config(pipeline_context().get)
    assert config.pipeline is not None
    assert (config.pipeline.branch, config.pipeline.bake_minutes) == ("main", 15)
    assert config.pipeline.manual_approval is False
    assert config.guarded_rollouts
    # As JSON on the command line (-c reportgrid:pipeline='{...}'), too.
    as_text = pipeline_context() | {
        "reportgrid:pipeline": json.dumps({"connectionArn": CONNECTION, "repository": REPOSITORY})
    }
    assert parse_config(as_text.get).pipeline == config.pipeline


def test_without_the_key_the_app_is_the_plain_one(synth: Synthesized) -> None:
    assert synth.config.pipeline is None
    assert synth.deployment.pipeline is None
    for region in REGIONS:
        template = synth.regional(region)
        for kind in ("AWS::Lambda::Alias", "AWS::CodeDeploy::DeploymentGroup"):
            assert template.find_resources(kind) == {}, kind
        # No canary schedule (the completion bus's rules are part of every app).
        schedules = template.find_resources(
            "AWS::Events::Rule", {"Properties": {"ScheduleExpression": Match.any_value()}}
        )
        assert schedules == {}
        for service in template.find_resources("AWS::ECS::Service").values():
            alarms = service["Properties"]["DeploymentConfiguration"]["Alarms"]
            assert alarms == {"AlarmNames": [], "Enable": False, "Rollback": False}


# --- the pipeline -----------------------------------------------------------------------------


def test_the_branch_comes_through_the_connection(piped: Piped) -> None:
    (source,) = (a for a in piped.actions if a["Stage"] == "Source")
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"] == {
        "ConnectionArn": CONNECTION,
        "FullRepositoryId": REPOSITORY,
        "BranchName": "main",
    }


def test_synth_runs_the_readmes_commands_on_the_projects_python_with_uvs_cache(
    piped: Piped,
) -> None:
    spec = piped.build_spec(piped.action("Synth"))
    assert spec["phases"]["build"]["commands"] == ["make test", "make synth"]
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make test" in readme
    assert "make synth" in readme
    # The project's Python (pyproject: >= 3.11; the venv's); the image's pyenv also has the
    # Lambda runtime's 3.12, which tests/artifacts runs the assets under.
    assert spec["phases"]["install"]["runtime-versions"] == {"python": "3.11"}
    environment = spec["_project"]["Environment"]
    assert environment["Image"] == "aws/codebuild/amazonlinux-x86_64-standard:5.0"
    assert {"Name": "UV_CACHE_DIR", "Type": "PLAINTEXT", "Value": "/root/.cache/uv"} in environment[
        "EnvironmentVariables"
    ]
    assert spec["cache"] == {"paths": ["/root/.cache/uv/**/*"]}
    assert spec["_project"]["Cache"]["Type"] == "S3"
    assert spec["artifacts"]["base-directory"] == "cdk.out"


def test_the_pipeline_deploys_itself_before_anything_else(piped: Piped) -> None:
    stages = [a["Stage"] for a in piped.actions]
    order = list(dict.fromkeys(stages))
    assert order == ["Source", "Build", "UpdatePipeline", "Assets", "Deploy"]
    mutate = piped.action("SelfMutate")
    assert "cdk -a . deploy " + PIPELINE_STACK in json.dumps(piped.build_spec(mutate))


def _run_order(piped: Piped, name: str) -> int:
    return int(piped.action(name)["RunOrder"])


def test_the_waves_data_then_primary_then_bake_then_the_rest(piped: Piped) -> None:
    deploy = {a["Name"]: int(a["RunOrder"]) for a in piped.actions if a["Stage"] == "Deploy"}
    approve = deploy["ApproveProduction"]
    data = deploy["Reportgrid-Data.Deploy"]
    primary = (deploy[f"Reportgrid-{PRIMARY}.Prepare"], deploy[f"Reportgrid-{PRIMARY}.Deploy"])
    primary_bake = deploy[f"Reportgrid-{PRIMARY}.Bake-{PRIMARY}"]
    other = (deploy[f"Reportgrid-{OTHER}.Prepare"], deploy[f"Reportgrid-{OTHER}.Deploy"])
    other_bake = deploy[f"Reportgrid-{OTHER}.Bake-{OTHER}"]
    last = [
        deploy[f"{name}.Prepare"]
        for name in ("Reportgrid-Global", *(f"Reportgrid-{r}-Replication" for r in REGIONS))
    ]
    # A person approves before any production stack; the data stack goes first.
    assert approve == min(deploy.values())
    assert approve < deploy["Reportgrid-Data.Prepare"] < data
    # Then the primary region alone, then its bake, then every other region, each baked.
    assert data < primary[0] < primary[1] < primary_bake < other[0] < other[1] < other_bake
    # Then the replication rules and the global stack, once every region has baked.
    assert all(other_bake < order for order in last)
    # Each stack deploys in its own region.
    assert piped.action(f"Reportgrid-{OTHER}.Deploy")["Region"] == OTHER
    assert piped.action("Reportgrid-Global.Deploy")["Region"] == "us-west-2"


def test_every_region_bakes_on_its_own_page_worthy_alarms(piped: Piped) -> None:
    for region in REGIONS:
        spec = piped.build_spec(piped.action(f"Reportgrid-{region}.Bake-{region}"))
        (command,) = spec["phases"]["build"]["commands"]
        template = piped.stage[f"Reportgrid-{region}"]["Resources"]
        # Every alarm of the region's monitoring that pages its topic (an SLO's window alarms
        # page only through their pair's composite), and every composite.
        alarms = [
            r["Properties"]["AlarmName"]
            for lid, r in template.items()
            if r["Type"] == "AWS::CloudWatch::Alarm"
            and lid.startswith("Monitoring")
            and r["Properties"].get("AlarmActions")
        ]
        composites = [
            r["Properties"]["AlarmName"]
            for r in template.values()
            if r["Type"] == "AWS::CloudWatch::CompositeAlarm"
        ]
        assert len(alarms) >= 17
        assert all(
            isinstance(name, str) and name.startswith(f"reportgrid-{region}-") for name in alarms
        )
        prefix = f"python3 cdk/bake.py --region {region} --minutes {BAKE_MINUTES} --alarms "
        assert command.startswith(prefix), command
        named = command.rsplit(" ", 1)[-1].split(",")
        assert sorted(named) == sorted([*alarms, *composites])
        assert f"reportgrid-{region}-unhealthy" in composites
        # The canary's alarm is one of them.
        assert f"reportgrid-{region}-CanaryFailing" in named
        # The step outlasts its bake.
        assert spec["_project"]["TimeoutInMinutes"] == BAKE_MINUTES + 15


def test_make_synth_builds_the_pipeline_offline_with_its_defaults(tmp_path: Path) -> None:
    # app.py as `make synth` runs it, the context as the CLI would pass it; no credentials.
    # The settings left out: no approval, the default bake (the module's `piped` sets both).
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps(pipeline_context()),
        "CDK_OUTDIR": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "app.py")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    stacks = {
        k for k, v in manifest["artifacts"].items() if v["type"] == "aws:cloudformation:stack"
    }
    assert PIPELINE_STACK in stacks
    # The regional stacks are the pipeline's, in its stage, not the app's.
    assert not any(name.startswith("Reportgrid-eu") for name in stacks)
    assert (tmp_path / f"assembly-{PIPELINE_STACK}-Deploy").is_dir()
    template = manifest["artifacts"][PIPELINE_STACK]["properties"]["templateFile"]
    plain = Piped(
        config=parse_config(pipeline_context().get),
        deployment=None,  # type: ignore[arg-type]  # only the pipeline's template is read
        pipeline=json.loads((tmp_path / template).read_text()),
        stage={},
        files={},
    )
    assert [a for a in plain.actions if a["ActionTypeId"]["Category"] == "Approval"] == []
    (command,) = plain.build_spec(plain.action(f"Reportgrid-{PRIMARY}.Bake-{PRIMARY}"))["phases"][
        "build"
    ]["commands"]
    assert " --minutes 15 " in command  # the default bake


# --- the stage is the app ----------------------------------------------------------------------


# What the pipeline adds to a region, by resource type and property (all else is the app's).
ROLLOUT_PROPERTIES = {
    ("AWS::ECS::Service", "DeploymentConfiguration"),
    ("AWS::CloudWatch::Alarm", "AlarmName"),
    ("AWS::CloudWatch::Dashboard", "DashboardBody"),
    ("AWS::Lambda::EventSourceMapping", "FunctionName"),
}


def test_the_pipeline_deploys_the_apps_stacks_keeping_every_id_and_name(
    synth: Synthesized, piped: Piped
) -> None:
    # The stacks of the stage are the app's, under the same CloudFormation names, and every
    # resource the app has keeps its logical id and its properties: the pipeline takes over
    # stacks deployed by hand and replaces nothing (no Kinesis mapping re-reading the stream
    # from TRIM_HORIZON, no security group replaced).
    assert sorted(piped.stage) == sorted(s.stack_name for s in synth.deployment.stacks)
    problems = []
    for stack in synth.deployment.stacks:
        plain = synth.templates[stack.stack_name].to_json()["Resources"]
        staged = piped.stage[stack.stack_name]["Resources"]
        problems += [f"{stack.stack_name}: {lid} is gone" for lid in plain if lid not in staged]
        for lid, resource in plain.items():
            twin = staged.get(lid)
            if twin is None:
                continue
            assert twin["Type"] == resource["Type"], lid
            for key in set(resource.get("Properties", {})) | set(twin.get("Properties", {})):
                if (resource["Type"], key) in ROLLOUT_PROPERTIES:
                    continue
                if resource.get("Properties", {}).get(key) != twin.get("Properties", {}).get(key):
                    problems.append(f"{stack.stack_name}: {lid}.{key} differs")
    assert problems == []


def test_the_regions_of_the_second_wave_wait_for_the_primary_only_in_the_pipeline(
    synth: Synthesized, piped: Piped
) -> None:
    primary = piped.deployment.regions[PRIMARY]
    other = piped.deployment.regions[OTHER]
    assert primary in other.dependencies
    assert synth.deployment.regions[PRIMARY] not in synth.deployment.regions[OTHER].dependencies


# --- rolling back inside a region -----------------------------------------------------------


def _alarm_id(template: dict[str, Any], name: str) -> str:
    (lid,) = (
        lid
        for lid in template["Resources"]
        if lid.startswith(f"Monitoring{name}")
        and template["Resources"][lid]["Type"] == "AWS::CloudWatch::Alarm"
    )
    return lid


@pytest.mark.parametrize("region", REGIONS)
def test_every_ecs_service_rolls_back_on_its_alarms(piped: Piped, region: str) -> None:
    template = piped.stage[f"Reportgrid-{region}"]
    services = {
        lid: r["Properties"]["DeploymentConfiguration"]
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::ECS::Service"
    }
    expected = {
        "EdgeService": rollout.EDGE_ALARMS,
        "QueueWorkerService": rollout.QUEUE_WORKER_ALARMS,
        "StandbyWorkerService": rollout.STANDBY_ALARMS,
    }
    assert len(services) == len(expected)
    for prefix, alarms in expected.items():
        (config,) = (c for lid, c in services.items() if lid.startswith(prefix))
        assert config["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}, prefix
        assert config["Alarms"] == {
            "AlarmNames": [{"Ref": _alarm_id(template, name)} for name in alarms],
            "Enable": True,
            "Rollback": True,
        }, prefix
    assert "EdgeLatency" in rollout.EDGE_ALARMS


def test_the_edge_latency_and_worker_failure_alarms(piped: Piped) -> None:
    template = piped.stage_template(f"Reportgrid-{PRIMARY}")
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": f"reportgrid-{PRIMARY}-EdgeLatency",
            "MetricName": "RequestLatency",
            "Namespace": "Reportgrid",
            "ExtendedStatistic": "p99",
            "Dimensions": Match.array_with([{"Name": "Method", "Value": "SubmitReport"}]),
            "ComparisonOperator": "GreaterThanThreshold",
        },
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": f"reportgrid-{PRIMARY}-QueueWorkerFailureRate",
            "Metrics": Match.array_with(
                [
                    Match.object_like(
                        {
                            "Expression": Match.string_like_regexp(
                                r"100 \* failed / \(done \+ failed\)"
                            )
                        }
                    )
                ]
            ),
        },
    )


@pytest.mark.parametrize("region", REGIONS)
def test_the_stream_worker_deploys_through_its_alias_with_a_codedeploy_canary(
    piped: Piped, region: str
) -> None:
    template = piped.stage[f"Reportgrid-{region}"]["Resources"]
    ((alias_id, alias),) = (
        (k, v) for k, v in template.items() if v["Type"] == "AWS::Lambda::Alias"
    )
    (function_id,) = (
        k
        for k, v in template.items()
        if v["Type"] == "AWS::Lambda::Function"
        and v["Properties"]["Handler"] == "functions.stream_worker.handler.handler"
    )
    (version_id,) = (k for k, v in template.items() if v["Type"] == "AWS::Lambda::Version")
    assert alias["Properties"]["Name"] == "live"
    assert alias["Properties"]["FunctionName"] == {"Ref": function_id}
    # A version published by each deploy (its logical id is the function's configuration).
    assert alias["Properties"]["FunctionVersion"] == {"Fn::GetAtt": [version_id, "Version"]}
    assert template[version_id]["Properties"]["FunctionName"] == {"Ref": function_id}
    # The stream is read through the alias.
    (mapping,) = (
        v["Properties"]
        for k, v in template.items()
        if v["Type"] == "AWS::Lambda::EventSourceMapping" and k.startswith("StreamWorker")
    )
    assert alias_id in json.dumps(mapping["FunctionName"])
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    # CodeDeploy shifts the alias: 10 % for 5 minutes, back on the function's error alarm.
    (group,) = (
        v["Properties"]
        for v in template.values()
        if v["Type"] == "AWS::CodeDeploy::DeploymentGroup"
    )
    assert group["DeploymentConfigName"] == "CodeDeployDefault.LambdaCanary10Percent5Minutes"
    assert group["AlarmConfiguration"] == {
        "Alarms": [
            {"Name": {"Ref": _alarm_id(piped.stage[f"Reportgrid-{region}"], "StreamWorkerErrors")}}
        ],
        "Enabled": True,
    }
    assert set(group["AutoRollbackConfiguration"]["Events"]) == {
        "DEPLOYMENT_FAILURE",
        "DEPLOYMENT_STOP_ON_REQUEST",
        "DEPLOYMENT_STOP_ON_ALARM",
    }
    assert group["AutoRollbackConfiguration"]["Enabled"] is True
    # CloudFormation updates the alias through that deployment group.
    assert alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]["DeploymentGroupName"] == {
        "Ref": next(
            k for k, v in template.items() if v["Type"] == "AWS::CodeDeploy::DeploymentGroup"
        )
    }


# --- the synthetic canary ----------------------------------------------------------------------


@pytest.mark.parametrize("region", REGIONS)
def test_the_canary_probes_its_region_every_minute_and_pages(piped: Piped, region: str) -> None:
    template = piped.stage[f"Reportgrid-{region}"]["Resources"]
    ((function_id, function),) = (
        (k, v)
        for k, v in template.items()
        if v["Type"] == "AWS::Lambda::Function"
        and v["Properties"]["Handler"] == canary_function.HANDLER
    )
    props = function["Properties"]
    variables = props["Environment"]["Variables"]
    (alb,) = (
        k for k, v in template.items() if v["Type"] == "AWS::ElasticLoadBalancingV2::LoadBalancer"
    )
    # The region's own listener (through GA it would pass while this region is down).
    assert variables[canary_function.ENV_ENDPOINT] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [alb, "DNSName"]}, ":443"]]
    }
    assert variables[canary_function.ENV_TLS] == "true"
    assert variables[canary_function.ENV_TLS_NAME] == DOMAIN
    assert ":secret:reportgrid/canary-api-key" in json.dumps(
        variables[canary_function.ENV_API_KEY_SECRET_ARN]
    )
    assert variables["REPORTGRID_REGION"] == region
    assert "VpcConfig" in props
    assert props["Timeout"] == canary_function.TIMEOUT_SECONDS
    # Its own asset: the `canary` artifact, not the workers' zip.
    (worker,) = (
        v
        for v in template.values()
        if v["Type"] == "AWS::Lambda::Function"
        and v["Properties"]["Handler"] == "functions.stream_worker.handler.handler"
    )
    assert props["Code"] != worker["Properties"]["Code"]
    # Every minute, once.
    (rule,) = (
        v["Properties"]
        for v in template.values()
        if v["Type"] == "AWS::Events::Rule" and "ScheduleExpression" in v["Properties"]
    )
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    # Three minutes without a success page (no data at all is a failure too).
    Template.from_json(piped.stage[f"Reportgrid-{region}"]).has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": f"reportgrid-{region}-CanaryFailing",
            "Namespace": "Reportgrid",
            "MetricName": canary_function.SUCCESS_METRIC,
            "Dimensions": [{"Name": "service", "Value": canary_function.SERVICE}],
            "Statistic": "Sum",
            "ComparisonOperator": "LessThanThreshold",
            "Threshold": 1,
            "EvaluationPeriods": 3,
            "TreatMissingData": "breaching",
            "AlarmActions": [Match.any_value()],
        },
    )
    # It may read its key, and nothing else of ours.
    (policy,) = (
        v["Properties"]["PolicyDocument"]["Statement"]
        for v in template.values()
        if v["Type"] == "AWS::IAM::Policy"
        and any(
            role["Ref"].startswith("CanaryFunctionServiceRole") for role in v["Properties"]["Roles"]
        )
    )
    secrets = [s for s in policy if "secretsmanager:GetSecretValue" in s["Action"]]
    assert len(secrets) == 1
    assert "reportgrid/canary-api-key" in json.dumps(secrets[0]["Resource"])
    assert not [
        s
        for s in policy
        if any(a.startswith(("dynamodb:", "s3:", "kinesis:", "sqs:")) for a in s["Action"])
    ]


def test_the_canary_key_secret_is_replicated_to_every_region(piped: Piped) -> None:
    piped.stage_template("Reportgrid-Data").has_resource_properties(
        "AWS::SecretsManager::Secret",
        {"Name": "reportgrid/canary-api-key", "ReplicaRegions": [{"Region": OTHER}]},
    )


def test_the_canary_and_its_stack_name_the_same_variables_and_metrics() -> None:
    from functions.canary import handler, settings

    assert (handler.SERVICE, handler.SUCCESS, handler.LATENCY, handler.NAMESPACE) == (
        canary_function.SERVICE,
        canary_function.SUCCESS_METRIC,
        canary_function.LATENCY_METRIC,
        "Reportgrid",
    )
    assert (settings.ENDPOINT, settings.TLS, settings.TLS_NAME, settings.API_KEY_SECRET_ARN) == (
        canary_function.ENV_ENDPOINT,
        canary_function.ENV_TLS,
        canary_function.ENV_TLS_NAME,
        canary_function.ENV_API_KEY_SECRET_ARN,
    )


# --- the bake check itself, against CloudWatch (the moto server) ---------------------------


@pytest.fixture
def cloudwatch(moto_server: MotoServer) -> Any:
    moto_server.reset()
    client = boto3.client("cloudwatch", region_name=PRIMARY, endpoint_url=moto_server.endpoint_url)
    calls: list[dict[str, Any]] = []
    client.meta.events.register(
        "before-parameter-build.cloudwatch.DescribeAlarms",
        lambda params, **_: calls.append(dict(params)),
    )
    client.calls = calls  # type: ignore[attr-defined]
    for name in ("reportgrid-eu-west-1-EdgeFaults", "reportgrid-eu-west-1-unhealthy"):
        client.put_metric_alarm(
            AlarmName=name,
            MetricName="RequestFaults",
            Namespace="Reportgrid",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanThreshold",
        )
        client.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="quiet")
    return client


NAMES = ["reportgrid-eu-west-1-EdgeFaults", "reportgrid-eu-west-1-unhealthy"]


def _no_waiting(seconds: float) -> None:
    raise AssertionError(f"the bake waited {seconds:g} s instead of failing at its first look")


def test_a_quiet_region_bakes(cloudwatch: Any) -> None:
    said: list[str] = []
    assert bake.bake(cloudwatch, NAMES, minutes=0, say=said.append) == bake.OK
    assert said == ["baked: 2 alarms stayed out of ALARM for 0 minutes"]
    # Composite alarms are only returned when asked for.
    assert cloudwatch.calls[0]["AlarmTypes"] == ["CompositeAlarm", "MetricAlarm"]


def test_an_alarm_in_alarm_fails_the_bake_naming_it(cloudwatch: Any) -> None:
    cloudwatch.set_alarm_state(AlarmName=NAMES[1], StateValue="ALARM", StateReason="edge down")
    said: list[str] = []
    assert (
        bake.bake(cloudwatch, NAMES, minutes=15, sleep=_no_waiting, say=said.append) == bake.FIRED
    )
    assert said == [f"FAIL: {NAMES[1]} is in ALARM: edge down"]


def test_an_alarm_firing_during_the_bake_fails_it_at_once(cloudwatch: Any) -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds
        if clock[0] >= 120:  # two minutes in, the region goes bad
            cloudwatch.set_alarm_state(AlarmName=NAMES[0], StateValue="ALARM", StateReason="5xx")

    result = bake.bake(
        cloudwatch, NAMES, minutes=15, clock=lambda: clock[0], sleep=sleep, say=lambda _: None
    )
    assert result == bake.FIRED
    assert clock[0] == 120  # it stopped at the first look after, not at the end


def test_a_missing_alarm_fails_the_bake(cloudwatch: Any) -> None:
    said: list[str] = []
    names = [*NAMES, "reportgrid-eu-west-1-Nope"]
    assert bake.bake(cloudwatch, names, minutes=0, say=said.append) == bake.MISSING
    assert said == ["FAIL: no such alarm: reportgrid-eu-west-1-Nope"]


def test_the_bake_script_runs_as_codebuild_runs_it(
    moto_server: MotoServer, cloudwatch: Any
) -> None:
    cloudwatch.set_alarm_state(AlarmName=NAMES[0], StateValue="ALARM", StateReason="faults")
    result = subprocess.run(
        [
            sys.executable,
            "-I",  # as `python3 cdk/bake.py` from the repository: no cdk package imported
            str(REPO_ROOT / "cdk" / "bake.py"),
            "--region",
            PRIMARY,
            "--minutes",
            "0",
            "--alarms",
            ",".join(NAMES),
            "--endpoint-url",
            moto_server.endpoint_url,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == bake.FIRED, result.stderr
    assert f"FAIL: {NAMES[0]} is in ALARM: faults" in result.stdout


# --- compliance ---------------------------------------------------------------------------------


def test_cdk_nag_finds_nothing_unacknowledged(tmp_path: Path) -> None:
    from aws_cdk import aws_sqs as sqs
    from cdk_nag import AwsSolutionsChecks

    def with_probe(stage: Construct, config: DeployConfig, directory: Path) -> Deployment:
        # A known finding inside the stage: the pack runs on the stacks the pipeline deploys.
        probe = cdk.Stack(
            stage, NAG_PROBE_STACK, env=cdk.Environment(account=ACCOUNT, region=PRIMARY)
        )
        sqs.Queue(probe, "UnsafeQueue", encryption=sqs.QueueEncryption.SQS_MANAGED)
        return build_stacks(stage, config, directory)

    app = cdk.App(context=pipeline_context(manualApproval=True), outdir=str(tmp_path))
    config = parse_config(app.node.try_get_context)
    assert config.pipeline is not None
    # As build_deployment builds it, with the probe added to the stage.
    PipelineStack(
        app,
        PIPELINE_STACK,
        config=config,
        pipeline=config.pipeline,
        project_dir=project_dir(),
        build=with_probe,
        env=cdk.Environment(account=ACCOUNT, region=PRIMARY),
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    (plugin,) = (p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions")
    findings = {
        (v["ruleName"], c["constructPath"])
        for v in plugin["violations"]
        for c in v["violatingConstructs"]
    }
    probe_path = f"{PIPELINE_STACK}/Deploy/{NAG_PROBE_STACK}/"
    assert {f for f in findings if not f[1].startswith(probe_path)} == set()
    assert ("AwsSolutions-SQS4", f"{probe_path}UnsafeQueue/Resource") in findings


# cfn-lint 1.x checks a CodePipeline action's RoleArn against the role-ARN format and reports
# what that finds under E3703, including I1022 (an informational "prefer Fn::Sub", which it
# skips in CDK templates everywhere else) for the Fn::Join CDK Pipelines writes. Only that
# message is excused; any other E3703 (an action reading an artifact it has no input for)
# still fails.
CFN_LINT_INFO_AS_ERROR = ("E3703", "Prefer using Fn::Sub over Fn::Join with an empty delimiter")


@pytest.mark.slow
def test_cfn_lint_reports_no_errors(piped: Piped) -> None:
    from cfnlint.api import lint  # type: ignore[import-untyped]

    errors = []
    excused = 0
    for name, (path, region) in piped.files.items():
        for match in lint(path.read_text(), regions=[region]):
            if (match.rule.id, match.message) == CFN_LINT_INFO_AS_ERROR:
                excused += 1
            elif match.rule.id.startswith("E"):
                errors.append(f"{name}: {match}")
    assert errors == []
    # Exactly one per CloudFormation action whose RoleArn is such an Fn::Join.
    joined = [
        a for a in piped.actions if "Fn::Join" in json.dumps(a["Configuration"].get("RoleArn"))
    ]
    assert excused == len(joined) > 0
    # The pipeline, its two cross-region artifact stacks, and the six stacks it deploys.
    assert len(piped.files) == 9
