"""The pipeline (with `reportgrid:pipeline`), in the primary region: the repository's branch
deploys itself, region by region, watching each region's alarms before the next.

  source   the branch, through a CodeConnections connection
  synth    the README's own commands, `make test` then `make synth`, in CodeBuild's Amazon
           Linux 2023 image (its pyenv has Python 3.9 to 3.14: 3.11 is the project's, 3.12
           the Lambda runtime's, which the artifact tests run under), uv's cache in S3
  mutate   the pipeline deploys its own new definition first (self-mutation)
  assets   the Lambda zips and the two container images, published once
  deploy   [approval, when asked] -> data -> primary region -> bake -> every other region
           in parallel, each with its own bake -> replication rules and the global stack

The stacks keep the logical ids and names they have outside the stage (cdk/stage_ids.py),
so the pipeline takes over stacks deployed by hand without replacing anything.

The waves are one CDK stage: the stacks reference each other (the global stack reads every
region's load balancer through CDK's cross-region references), and a reference may not
cross a stage. Inside the stage the order is the stacks' dependencies, which the pipeline
follows and where a stack's `post` steps finish before its dependents start: so every
other region depends on the primary region's stack, and the bake is each regional stack's
post step. The stacks are build_stacks' (cdk/deployment.py), the very ones `cdk deploy`
deploys, under the same CloudFormation names.

The bake is a CodeBuild step running cdk/bake.py from the commit being deployed: the region's
alarm names are known here (named by the region's monitoring), the step waits and looks
with `DescribeAlarms`, fails at once on an alarm in ALARM or missing, and a failed step stops
the pipeline before the next wave. CodeBuild over a Lambda step: CodePipeline's Lambda
invoke action needs a function that reports back through PutJobSuccessResult and has to be
re-invoked to wait longer than 15 minutes; CodeBuild simply runs for the bake, its log is
in the pipeline's console, and the minutes cost cents.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, cast

from aws_cdk import CfnElement, Duration, RemovalPolicy, Stack, Stage, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk.config import DeployConfig, PipelineConfig
from cdk.constructs.nag import arn_finding, suppress
from cdk.deployment import Deployment
from cdk.stage_ids import keep_app_identity

BUILD_IMAGE: Final = codebuild.LinuxBuildImage.AMAZON_LINUX_2023_5
PROJECT_PYTHON: Final = "3.11"  # pyproject.toml: requires-python >= 3.11; the venv's
UV_CACHE_DIR: Final = "/root/.cache/uv"
SYNTH_COMMANDS: Final = ("make test", "make synth")  # README, "Deploy"
STAGE: Final = "Deploy"
BAKE_SCRIPT: Final = "cdk/bake.py"
# A bake step's own time on top of its minutes (the image's start, the last look).
BAKE_SLACK_MINUTES: Final = 15


def _python_build_spec(**extra: Any) -> codebuild.BuildSpec:
    return codebuild.BuildSpec.from_object(
        {"phases": {"install": {"runtime-versions": {"python": PROJECT_PYTHON}}}, **extra}
    )


def bake_command(region: str, minutes: int, alarm_names: tuple[str, ...]) -> str:
    return (
        f"python3 {BAKE_SCRIPT} --region {region} --minutes {minutes} "
        f"--alarms {','.join(alarm_names)}"
    )


class PipelineStack(Stack):
    """Exposes `pipeline` (pipelines.CodePipeline), `stage` (the stacks it deploys, as
    `deployment`) and `bakes` (region -> its bake step)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: DeployConfig,
        pipeline: PipelineConfig,
        project_dir: Path,
        build: Callable[[Construct, DeployConfig, Path], Deployment],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        source = pipelines.CodePipelineSource.connection(
            pipeline.repository, pipeline.branch, connection_arn=pipeline.connection_arn
        )
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            pipeline_name="reportgrid",
            pipeline_type=codepipeline.PipelineType.V2,
            synth=self._synth(source),
            self_mutation=True,
            # One account: no customer keys for cross-account artifact access.
            cross_account_keys=False,
            publish_assets_in_parallel=True,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(build_image=BUILD_IMAGE)
            ),
        )
        self.stage = Stage(self, STAGE)
        self.deployment = deployment = build(self.stage, config, project_dir)
        primary = deployment.regions[config.primary_region]
        self.bakes: dict[str, pipelines.CodeBuildStep] = {}
        stack_steps = []
        for region, stack in deployment.regions.items():
            if stack is not primary:
                # The second wave starts once the primary region has baked.
                stack.add_stack_dependency(primary, "the primary region bakes first")
            self.bakes[region] = bake = self._bake(
                source, region, pipeline.bake_minutes, stack.monitoring.page_alarm_names
            )
            stack_steps.append(pipelines.StackSteps(stack=stack, post=[bake]))
        approval = (
            [
                pipelines.ManualApprovalStep(
                    "ApproveProduction",
                    comment="Deploy this commit to production, region by region?",
                )
            ]
            if pipeline.manual_approval
            else []
        )
        # Before add_stage, which synthesizes the stage.
        keep_app_identity(self.stage)
        self.pipeline.add_stage(self.stage, pre=approval, stack_steps=stack_steps)
        # The pipeline's own resources exist only once built; acknowledge them after.
        self.pipeline.build_pipeline()
        self._acknowledge()

    def _synth(self, source: pipelines.CodePipelineSource) -> pipelines.CodeBuildStep:
        self._cache = cache = s3.Bucket(
            self,
            "BuildCache",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(30))],
            removal_policy=RemovalPolicy.DESTROY,
        )
        suppress(
            cache,
            "AwsSolutions-S1",
            "A cache of downloaded wheels (uv's cache) for the synth build: nothing to audit "
            "in who read it; CodeBuild's own logs record every build.",
        )
        return pipelines.CodeBuildStep(
            "Synth",
            input=source,
            commands=list(SYNTH_COMMANDS),
            primary_output_directory="cdk.out",
            env={"UV_CACHE_DIR": UV_CACHE_DIR},
            # The whole suite (8+ minutes on a workstation) and the bundling: a larger host.
            build_environment=codebuild.BuildEnvironment(
                build_image=BUILD_IMAGE, compute_type=codebuild.ComputeType.LARGE
            ),
            partial_build_spec=_python_build_spec(cache={"paths": [f"{UV_CACHE_DIR}/**/*"]}),
            cache=codebuild.Cache.bucket(cache, prefix="synth"),
            timeout=Duration.minutes(60),
        )

    def _bake(
        self,
        source: pipelines.CodePipelineSource,
        region: str,
        minutes: int,
        alarm_names: tuple[str, ...],
    ) -> pipelines.CodeBuildStep:
        if not alarm_names:
            raise ValueError(f"{region}: the region's monitoring names no alarms to bake on")
        return pipelines.CodeBuildStep(
            f"Bake-{region}",
            input=source,
            commands=[bake_command(region, minutes, alarm_names)],
            partial_build_spec=_python_build_spec(),
            role_policy_statements=[
                # Composite alarms are returned only to a DescribeAlarms permission on "*"
                # (CloudWatch API reference, DescribeAlarms).
                iam.PolicyStatement(actions=["cloudwatch:DescribeAlarms"], resources=["*"])
            ],
            timeout=Duration.minutes(minutes + BAKE_SLACK_MINUTES),
        )

    def _acknowledge(self) -> None:
        """The cdk-nag findings on what CDK Pipelines generates, each named exactly."""
        built = self.pipeline.pipeline
        region, account = self.region, self.account
        suppress(
            self.pipeline,
            "AwsSolutions-CB4",
            "CDK Pipelines' CodeBuild projects (synth, self-mutation, assets, bakes) name no "
            "KMS key: CodeBuild then encrypts their output with the AWS managed key, and "
            "the builds handle no secret.",
        )
        suppress(
            built.artifact_bucket,
            "AwsSolutions-S1",
            "The pipeline's artifact bucket: build outputs passed between actions; the "
            "pipeline's execution history and CodeBuild's logs record every use of them.",
        )
        buckets = [built.artifact_bucket, self._cache]
        projects = [
            cast(CfnElement, node)
            for node in self.pipeline.node.find_all()
            if isinstance(node, codebuild.CfnProject)
        ]
        findings = [
            *(arn_finding(bucket, "/*") for bucket in buckets),
            *(
                f"Action::s3:{group}*"
                for group in ("GetObject", "GetBucket", "List", "DeleteObject", "Abort")
            ),
            f"Resource::arn:<AWS::Partition>:logs:{region}:{account}:log-group:/aws/codebuild/*",
            f"Resource::arn:<AWS::Partition>:codebuild:{region}:{account}:report-group/*",
            "Resource::*",
            f"Resource::arn:*:iam::{account}:role/*",
        ]
        for project in projects:
            name = self.resolve(project.logical_id)
            findings += [
                f"Resource::arn:<AWS::Partition>:logs:{region}:{account}:log-group:"
                f"/aws/codebuild/<{name}>:*",
                f"Resource::arn:<AWS::Partition>:codebuild:{region}:{account}:report-group/"
                f"<{name}>-*",
            ]
        for support in built.cross_region_support.values():
            bucket = support.replication_bucket
            generated = built.stack.resolve(bucket.bucket_name)  # a generated physical name
            findings.append(f"Resource::arn:<AWS::Partition>:s3:::{generated}/*")
            suppress(
                bucket,
                "AwsSolutions-S1",
                "CodePipeline's artifact replica in another region (a CDK cross-region "
                "support stack): build outputs for that region's deploy actions.",
            )
        suppress(
            self.pipeline,
            "AwsSolutions-IAM5",
            "CDK Pipelines' generated roles: the S3 action groups of grant_read_write on the "
            "artifact buckets' objects (bucket/*, and the build cache's); CodeBuild's own log "
            "groups and report groups (/aws/codebuild/<project>*, and * for the asset "
            "projects it creates per asset); the self-mutation's AssumeRole of the CDK "
            "bootstrap roles (role/*, conditioned on their aws-cdk:bootstrap-role tag); and "
            "actions with no resource-level scope: codebuild:StartBuild/BatchGetBuilds of "
            "the asset actions, cloudformation:DescribeStacks of the self-mutation, and the "
            "bakes' cloudwatch:DescribeAlarms, which returns composite alarms only when "
            "granted on * (CloudWatch API reference, DescribeAlarms).",
            findings=findings,
        )
