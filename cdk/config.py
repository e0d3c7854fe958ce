"""The deployment's settings, parsed once from CDK context into typed, validated values.

Every key lives under the `reportgrid:` prefix in cdk.json and can be overridden on the
command line (`-c reportgrid:regions=eu-west-1,us-east-1`); list and map values given on the
command line are JSON. A bad value stops synth with a message naming the key.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final

from reportgrid import limits
from reportgrid import resources as r

PREFIX = "reportgrid:"

_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_ACCOUNT = re.compile(r"^\d{12}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# A CodeStar Connections / CodeConnections connection (the service was renamed; both ARN
# forms are accepted by CodePipeline's CodeStarSourceConnection action).
_CONNECTION = re.compile(
    r"^arn:aws[a-z-]*:(codestar-connections|codeconnections):[a-z]{2}(-gov)?-[a-z]+-\d:"
    r"\d{12}:connection/[0-9a-f-]{36}$"
)
# The region sets a multi-Region strongly consistent (MRSC) global table may span: three
# replicas, or two and a witness, all in one set (AWS::DynamoDB::GlobalTable
# GlobalTableWitness, CloudFormation template reference).
MRSC_REGION_SETS: Final = {
    "US": ("us-east-1", "us-east-2", "us-west-2"),
    "EU": ("eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1"),
    "AP": ("ap-northeast-1", "ap-northeast-2", "ap-northeast-3"),
}
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_BRANCH = re.compile(r"^[A-Za-z0-9._/-]{1,255}$")


class ConfigError(ValueError):
    """A context value is missing or malformed; the message names the key."""


# Fargate's valid task sizes: CPU units -> the memory (MiB) each allows. AWS's table,
# docs.aws.amazon.com/AmazonECS/latest/developerguide/task-cpu-memory-error.html (8 and 16
# vCPU need Linux platform 1.4.0, the default).
FARGATE_MEMORY_MIB: Mapping[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4097, 1024)),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
    8192: tuple(range(16384, 61441, 4096)),
    16384: tuple(range(32768, 122881, 8192)),
}
# Lambda function memory: 128 MB to 10,240 MB (AWS Lambda quotas).
LAMBDA_MEMORY_MIB = (128, 10_240)
# ElastiCache Serverless usage limits (CacheUsageLimits): data storage 1..5,000 GB and
# 1,000..15,000,000 ECPUs per second (the CDK elasticache-alpha CacheUsageLimitsProperty
# documents both ranges).
CACHE_DATA_GB = (1, 5_000)
CACHE_ECPU_PER_SECOND = (1_000, 15_000_000)
# The VPC has three AZs; one NAT gateway per AZ at most (at least one: the only egress).
MAX_NAT_GATEWAYS = 3


def _fargate_memory_text(cpu: int) -> str:
    memory = FARGATE_MEMORY_MIB[cpu]
    if len(memory) <= 4:
        return ", ".join(map(str, memory))
    return f"{memory[0]}..{memory[-1]} in steps of {memory[1] - memory[0]}"


def _check_fargate(name: str, cpu: int, memory_mib: int) -> None:
    key = f"{PREFIX}capacity.{name}"
    if cpu not in FARGATE_MEMORY_MIB:
        raise ConfigError(
            f"{key}_cpu: {cpu} is not a Fargate CPU size; use one of "
            f"{', '.join(map(str, FARGATE_MEMORY_MIB))}"
        )
    if memory_mib not in FARGATE_MEMORY_MIB[cpu]:
        raise ConfigError(
            f"{key}_memory_mib: {memory_mib} MiB is not valid with {name}_cpu={cpu}; "
            f"Fargate allows {_fargate_memory_text(cpu)} MiB"
        )


def _check_range(name: str, value: int, bounds: tuple[int, int], unit: str) -> None:
    low, high = bounds
    if not low <= value <= high:
        raise ConfigError(
            f"{PREFIX}capacity.{name}: {value} is out of range; allowed {low}..{high} {unit}"
        )


# -- The edge fleet and the task stream, from measurements ----------------------------
# One place for the figures the capacity defaults follow from; docs/PERFORMANCE.md ("Fleet
# arithmetic", "Ingest") shows the derivation and the runs, and tests/infra/
# test_edge_capacity.py fails when a default no longer follows from them.
#
# The edge's own CPU per SubmitReport (Submit is the costliest call made at volume; a hot
# Get costs less), measured with Kinesis answered at once (bench row
# edge-submit-fastkinesis, `python -m bench --only null-submit,edge-submit-fastkinesis`),
# on a shared 2-vCPU x86 machine at load average 3.5-4 (the null server: 267 us in the same
# run, 145 us on a quiet machine; 426-434 us in three runs at load 11-17), so a figure
# from a busy machine that errs toward more tasks. Re-measure quietly and change it here.
EDGE_CPU_US_PER_SUBMIT_MEASURED: Final = 347
# A Fargate vCPU is one hyperthread, like a vCPU of the machine measured; this keeps a
# fifth in hand for what a bench does not see (GC pauses, log shipping, skew between tasks).
EDGE_VCPU_DERATE: Final = 0.8
EDGE_SUBMITS_PER_VCPU: Final = int(
    1_000_000 / max(EDGE_CPU_US_PER_SUBMIT_MEASURED, 1) * EDGE_VCPU_DERATE
)
# What the defaults are sized for: the whole service, all regions together.
DESIGN_REQUESTS_PER_SECOND: Final = 10_000
EDGE_CPU_TARGET_PERCENT: Final = 60
# A region that loses its peer takes both regions' traffic at once; until it has scaled
# out it may run this hot (the chain sheds above max_concurrent_rpcs, not before).
FAILOVER_CPU_PERCENT: Final = 90
# A Kinesis shard takes 1,000 records/s or 1 MiB/s of writes, whichever comes first
# (PutRecords API reference); every Submit is one record. A task record (data and
# partition key) of a Submit as the SDK sends it (idempotency key included): 254 bytes.
SHARD_RECORDS_PER_SECOND: Final = 1_000
SHARD_BYTES_PER_SECOND: Final = 1024 * 1024
TASK_RECORD_BYTES_MEASURED: Final = 254
# Random report ids spread records evenly; a tenth in hand for the hash ranges' skew.
SHARD_HEADROOM: Final = 1.1


# An on-demand stream starts with the write capacity of 4 shards (4,000 records/s).
ON_DEMAND_INITIAL_SHARDS: Final = 4


def default_max_running(capacity: Capacity) -> int:
    """REPORTGRID_DEFAULT_MAX_RUNNING: the running reports a tenant without a tenant item
    may have at once in a region, half of what the stream workers hold at once
    (reportgrid/limits.py default_max_running)."""
    return limits.default_max_running(
        shards=capacity.stream_shards or ON_DEMAND_INITIAL_SHARDS,
        parallelization_factor=capacity.lambda_parallelization_factor,
        batch_size=capacity.lambda_batch_size,
    )


def edge_submits_per_task(cpu_units: int, cpu_percent: int) -> int:
    """Submits/s one edge task carries at `cpu_percent` CPU."""
    return int(EDGE_SUBMITS_PER_VCPU * cpu_units / 1024 * cpu_percent / 100)


def edge_tasks_for(requests_per_second: int, cpu_units: int, cpu_percent: int) -> int:
    return -(-requests_per_second // edge_submits_per_task(cpu_units, cpu_percent))


def stream_shards_for(submits_per_second: int, record_bytes: int) -> int:
    """Provisioned shards for a steady `submits_per_second`, one record each."""
    by_records = submits_per_second / SHARD_RECORDS_PER_SECOND
    by_bytes = submits_per_second * record_bytes / SHARD_BYTES_PER_SECOND
    return math.ceil(round(max(by_records, by_bytes) * SHARD_HEADROOM, 6))


@dataclass(frozen=True, slots=True)
class Capacity:
    """Sizes and scaling bounds; defaults fit ~10,000 requests/s per region."""

    # Sized from the figures above (test_edge_capacity.py): one region alone carries
    # DESIGN_REQUESTS_PER_SECOND at FAILOVER_CPU_PERCENT.
    edge_min_tasks: int = 3
    edge_max_tasks: int = 30
    edge_cpu: int = 2048
    edge_memory_mib: int = 4096
    edge_workers: int = 2  # gRPC server processes per task (one per vCPU)
    edge_cpu_target_percent: int = EDGE_CPU_TARGET_PERCENT
    # ALB RequestCountPerTarget is a per-minute sum: what one task carries at the CPU
    # target, 2,766 Submits/s = 165,960/min, so both policies call for a task at one load.
    edge_requests_per_target_per_minute: int = 165_960
    worker_min_tasks: int = 1
    worker_max_tasks: int = 20
    worker_cpu: int = 2048
    worker_memory_mib: int = 8192
    worker_concurrency: int = 2
    # Target messages waiting per running worker task (backlog per task).
    worker_backlog_per_task: int = 10
    # The standby worker (mirrored tasks from the peer region). It also writes the region's
    # heartbeat, so at least one task always runs.
    standby_min_tasks: int = 1
    standby_max_tasks: int = 10
    # 0 = on-demand capacity; N = provisioned with N shards. Provisioned, sized for the
    # design load in one region (a failover): an on-demand stream starts at 4,000
    # records/s and takes up to 15 minutes per doubling (docs/PERFORMANCE.md, "Ingest").
    stream_shards: int = 11
    lambda_memory_mib: int = 1769  # one full vCPU
    lambda_batch_size: int = 100
    lambda_parallelization_factor: int = 2
    lambda_max_retries: int = 3
    lambda_max_record_age_hours: int = 6
    cache_max_data_gb: int = 10
    cache_max_ecpu_per_second: int = 100_000
    waf_requests_per_ip_per_5min: int = 300_000
    nat_gateways: int = 3  # one per AZ; egress only for cross-region calls

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{PREFIX}capacity.{f.name}: must be a whole number >= 0")
        if self.edge_min_tasks < 1 or self.edge_min_tasks > self.edge_max_tasks:
            raise ConfigError(f"{PREFIX}capacity: need 1 <= edge_min_tasks <= edge_max_tasks")
        if self.worker_min_tasks < 1 or self.worker_min_tasks > self.worker_max_tasks:
            raise ConfigError(
                f"{PREFIX}capacity: need 1 <= worker_min_tasks <= worker_max_tasks "
                "(backlog per task divides by the running task count)"
            )
        if self.standby_min_tasks < 1 or self.standby_min_tasks > self.standby_max_tasks:
            raise ConfigError(
                f"{PREFIX}capacity: need 1 <= standby_min_tasks <= standby_max_tasks "
                "(the standby worker is also the region's heartbeat)"
            )
        if not 1 <= self.lambda_parallelization_factor <= 10:
            raise ConfigError(f"{PREFIX}capacity.lambda_parallelization_factor: must be 1..10")
        if not 1 <= self.lambda_batch_size <= 10_000:
            raise ConfigError(f"{PREFIX}capacity.lambda_batch_size: must be 1..10000")
        if not 1 <= self.lambda_max_record_age_hours <= 24:
            # Bounded by the stream's retention (resources.TASK_RETENTION_HOURS).
            raise ConfigError(f"{PREFIX}capacity.lambda_max_record_age_hours: must be 1..24")
        if self.waf_requests_per_ip_per_5min < 10:
            raise ConfigError(f"{PREFIX}capacity.waf_requests_per_ip_per_5min: must be >= 10")
        _check_fargate("edge", self.edge_cpu, self.edge_memory_mib)
        _check_fargate("worker", self.worker_cpu, self.worker_memory_mib)
        _check_range("lambda_memory_mib", self.lambda_memory_mib, LAMBDA_MEMORY_MIB, "MB")
        _check_range("nat_gateways", self.nat_gateways, (1, MAX_NAT_GATEWAYS), "(one per AZ)")
        _check_range("cache_max_data_gb", self.cache_max_data_gb, CACHE_DATA_GB, "GB")
        _check_range(
            "cache_max_ecpu_per_second",
            self.cache_max_ecpu_per_second,
            CACHE_ECPU_PER_SECOND,
            "ECPUs per second",
        )


# How long the pipeline watches a region's alarms after deploying it, in minutes (0: one
# look right after the deploy); a CodeBuild action may run at most 8 hours.
BAKE_MINUTES = (0, 420)
DEFAULT_BAKE_MINUTES = 15


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """`reportgrid:pipeline`: the repository the pipeline deploys from (through a
    CodeConnections connection), how long it bakes each region, and whether a person
    approves before production."""

    connection_arn: str
    repository: str  # owner/name
    branch: str = "main"
    bake_minutes: int = DEFAULT_BAKE_MINUTES
    manual_approval: bool = False


@dataclass(frozen=True, slots=True)
class LeaseArbiterConfig:
    """The claim/lease arbiter's MRSC table: its replicas (the deployment's regions) and,
    with two of them, the witness region."""

    replicas: tuple[str, ...]
    witness_region: str | None = None


@dataclass(frozen=True, slots=True)
class DeployConfig:
    """Where and how big: the regions, the account, TLS, alarms and the traffic dials."""

    account: str
    regions: tuple[str, ...]  # the first is the primary (holds the data stack)
    global_region: str  # Global Accelerator's home region (us-west-2)
    certificate_arns: Mapping[str, str] = field(default_factory=dict)
    domain_name: str | None = None
    hosted_zone_id: str | None = None
    hosted_zone_name: str | None = None
    alarm_email: str | None = None
    traffic_dials: Mapping[str, int] = field(default_factory=dict)
    capacity: Capacity = field(default_factory=Capacity)
    zones: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Multi-region timing (docs/MULTI_REGION.md): how long a mirrored task waits in the
    # peer's standby queue, and the standby's safety margin (>= 2x the table's replication
    # lag).
    mirror_grace_seconds: int = r.MIRROR_GRACE_SECONDS
    standby_margin_seconds: float = r.STANDBY_MARGIN_SECONDS
    # Buckets the workers may read report inputs from (SubmitReport's input.s3_uri).
    input_buckets: tuple[str, ...] = ()
    # The self-deploying pipeline (cdk/stacks/pipeline.py). With it the regions also roll
    # back by themselves and run a synthetic canary (cdk/stacks/region/rollout.py).
    pipeline: PipelineConfig | None = None
    # Claims and leases on an MRSC table (exactly-once takeover), when the regions allow it
    # (docs/MULTI_REGION.md "Exactly-once failover"); None: the last-writer-wins path.
    lease_arbiter: LeaseArbiterConfig | None = None

    @property
    def guarded_rollouts(self) -> bool:
        """Deployment alarms with rollback, the Lambda canary deployment and the synthetic
        canary: what a region carries when the pipeline deploys it."""
        return self.pipeline is not None

    @property
    def primary_region(self) -> str:
        return self.regions[0]

    def peer_region(self, region: str) -> str | None:
        """The next region in the ring: where this region's tasks are mirrored, and the
        replica bucket its edge reads. None for a single-region deployment."""
        if len(self.regions) < 2:
            return None
        index = self.regions.index(region)
        return self.regions[(index + 1) % len(self.regions)]

    def previous_region(self, region: str) -> str | None:
        """The region whose peer this one is (the previous one in the ring)."""
        if len(self.regions) < 2:
            return None
        index = self.regions.index(region)
        return self.regions[index - 1]

    def replication_regions(self, region: str) -> tuple[str, ...]:
        """Where this region's results bucket replicates: its peer (whose bucket is this
        region's REPLICA_RESULTS_BUCKET) and, both ways, the region it is peer of (whose
        standby runs this region's mirrored tasks and whose results must come back)."""
        regions = (self.peer_region(region), self.previous_region(region))
        return tuple(dict.fromkeys(other for other in regions if other is not None))

    def traffic_dial(self, region: str) -> int:
        return self.traffic_dials.get(region, 100)

    @property
    def creates_certificates(self) -> bool:
        return self.hosted_zone_id is not None

    def availability_zones(self, region: str) -> tuple[str, ...]:
        """Three AZs, named in context or <region>a/b/c: given, never looked up, so synth
        needs no credentials."""
        return self.zones.get(region) or tuple(f"{region}{suffix}" for suffix in "abc")


def _as_json(key: str, value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{PREFIX}{key}: not valid JSON ({err.msg})") from None
    return value


def _regions(value: Any) -> tuple[str, ...]:
    value = _as_json("regions", value)
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{PREFIX}regions: give a non-empty list, primary first")
    for region in value:
        if not isinstance(region, str) or not _REGION.match(region):
            raise ConfigError(f"{PREFIX}regions: {region!r} is not an AWS region name")
    if len(set(value)) != len(value):
        raise ConfigError(f"{PREFIX}regions: a region is listed twice")
    return tuple(value)


def _str_map(key: str, value: Any, check: Callable[[str], bool], what: str) -> dict[str, str]:
    value = _as_json(key, value) if value is not None else {}
    if not isinstance(value, dict):
        raise ConfigError(f"{PREFIX}{key}: give a map of region to {what}")
    for region, item in value.items():
        if not isinstance(item, str) or not check(item):
            raise ConfigError(f"{PREFIX}{key}.{region}: {item!r} is not {what}")
    return dict(value)


def _dials(value: Any, regions: tuple[str, ...]) -> dict[str, int]:
    value = _as_json("trafficDials", value) if value is not None else {}
    if not isinstance(value, dict):
        raise ConfigError(f"{PREFIX}trafficDials: give a map of region to percent (0..100)")
    dials: dict[str, int] = {}
    for region, dial in value.items():
        if region not in regions:
            raise ConfigError(f"{PREFIX}trafficDials.{region}: not one of the regions")
        if not isinstance(dial, int) or isinstance(dial, bool) or not 0 <= dial <= 100:
            raise ConfigError(f"{PREFIX}trafficDials.{region}: {dial!r} is not a percent 0..100")
        dials[region] = dial
    return dials


def _zones(value: Any, regions: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    value = _as_json("availabilityZones", value) if value is not None else {}
    if not isinstance(value, dict):
        raise ConfigError(f"{PREFIX}availabilityZones: give a map of region to 3 zone names")
    zones: dict[str, tuple[str, ...]] = {}
    for region, names in value.items():
        if region not in regions:
            raise ConfigError(f"{PREFIX}availabilityZones.{region}: not one of the regions")
        if (
            not isinstance(names, list)
            or len(names) != 3
            or not all(isinstance(n, str) and n.startswith(region) for n in names)
        ):
            raise ConfigError(
                f"{PREFIX}availabilityZones.{region}: give 3 zone names of that region"
            )
        zones[region] = tuple(names)
    return zones


def _seconds(key: str, value: Any, default: float, low: float, high: float) -> float:
    if value is None or value == "":
        return float(default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{PREFIX}{key}: {value!r} is not a number of seconds") from None
    if isinstance(value, bool) or not low <= seconds <= high:
        raise ConfigError(f"{PREFIX}{key}: {value!r} must be {low:g}..{high:g} seconds")
    return seconds


def _buckets(value: Any) -> tuple[str, ...]:
    value = _as_json("inputBuckets", value) if value is not None else []
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        raise ConfigError(f"{PREFIX}inputBuckets: give a list of S3 bucket names")
    for name in value:
        if not isinstance(name, str) or not _BUCKET.match(name):
            raise ConfigError(f"{PREFIX}inputBuckets: {name!r} is not an S3 bucket name")
    return tuple(dict.fromkeys(value))


def _grace(value: Any) -> int:
    # SQS DelaySeconds: a whole number of seconds, at most MAX_SQS_DELAY_SECONDS.
    key = "mirrorGraceSeconds"
    seconds = _seconds(key, value, r.MIRROR_GRACE_SECONDS, 0, r.MAX_SQS_DELAY_SECONDS)
    if not seconds.is_integer():
        raise ConfigError(f"{PREFIX}{key}: {value!r} must be a whole number of seconds")
    return int(seconds)


def _capacity(value: Any) -> Capacity:
    value = _as_json("capacity", value) if value is not None else {}
    if not isinstance(value, dict):
        raise ConfigError(f"{PREFIX}capacity: give a map of setting to number")
    known = {f.name for f in fields(Capacity)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError(f"{PREFIX}capacity: unknown setting(s) {', '.join(unknown)}")
    return Capacity(**value)


def _lease_arbiter(value: Any, regions: tuple[str, ...]) -> LeaseArbiterConfig | None:
    """`leaseArbiter`: absent/false (off), true (a witness picked from the regions' set when
    there are two regions), or {"witnessRegion": "<region>"}."""
    key = f"{PREFIX}leaseArbiter"
    value = _as_json("leaseArbiter", value)
    if value is None or value is False or value in ("", "false"):
        return None
    witness: str | None = None
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"witnessRegion"})
        if unknown:
            raise ConfigError(f"{key}: unknown setting(s) {', '.join(unknown)}")
        witness = _optional_str("leaseArbiter.witnessRegion", value.get("witnessRegion"))
    elif value not in (True, "true"):
        raise ConfigError(f'{key}: give true, false or {{"witnessRegion": "<region>"}}')
    sets = [name for name, members in MRSC_REGION_SETS.items() if set(regions) <= set(members)]
    if not sets:
        listed = "; ".join(f"{n}: {', '.join(m)}" for n, m in MRSC_REGION_SETS.items())
        raise ConfigError(
            f"{key}: regions {', '.join(regions)} are not all in one MRSC region set "
            f"({listed}); leave it off to use the last-writer-wins path"
        )
    members = MRSC_REGION_SETS[sets[0]]
    if len(regions) == 3:
        if witness is not None:
            raise ConfigError(f"{key}.witnessRegion: three replicas take no witness")
        return LeaseArbiterConfig(replicas=regions)
    if len(regions) != 2:
        raise ConfigError(f"{key}: an MRSC table has three replicas, or two and a witness")
    if witness is None:
        witness = next(region for region in members if region not in regions)
    if witness in regions or witness not in members:
        raise ConfigError(
            f"{key}.witnessRegion: {witness!r} must be another region of the "
            f"{sets[0]} set ({', '.join(members)})"
        )
    return LeaseArbiterConfig(replicas=regions, witness_region=witness)


def _optional_str(key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{PREFIX}{key}: must be a string")
    return value


_PIPELINE_KEYS = {
    "connectionArn": "connection_arn",
    "repository": "repository",
    "branch": "branch",
    "bakeMinutes": "bake_minutes",
    "manualApproval": "manual_approval",
}


def _pipeline(value: Any, domain: str | None) -> PipelineConfig | None:
    key = f"{PREFIX}pipeline"
    value = _as_json("pipeline", value)
    if not value:  # absent, "" or {}: no pipeline
        return None
    if not isinstance(value, dict):
        raise ConfigError(
            f"{key}: give a map with connectionArn, repository (owner/name) and optionally "
            "branch, bakeMinutes, manualApproval"
        )
    unknown = sorted(set(value) - set(_PIPELINE_KEYS))
    if unknown:
        raise ConfigError(f"{key}: unknown setting(s) {', '.join(unknown)}")
    for name in ("connectionArn", "repository"):
        if name not in value:
            raise ConfigError(f"{key}.{name}: missing")
    connection = value["connectionArn"]
    if not isinstance(connection, str) or not _CONNECTION.match(connection):
        raise ConfigError(
            f"{key}.connectionArn: {connection!r} is not a CodeConnections connection ARN "
            "(arn:aws:codeconnections:<region>:<account>:connection/<id>)"
        )
    repository = value["repository"]
    if not isinstance(repository, str) or not _REPOSITORY.match(repository):
        raise ConfigError(f"{key}.repository: {repository!r} is not owner/name")
    branch = value.get("branch", "main")
    if not isinstance(branch, str) or not _BRANCH.match(branch) or ".." in branch:
        raise ConfigError(f"{key}.branch: {branch!r} is not a branch name")
    bake = value.get("bakeMinutes", DEFAULT_BAKE_MINUTES)
    low, high = BAKE_MINUTES
    if not isinstance(bake, int) or isinstance(bake, bool) or not low <= bake <= high:
        raise ConfigError(f"{key}.bakeMinutes: {bake!r} must be whole minutes {low}..{high}")
    approval = value.get("manualApproval", False)
    if not isinstance(approval, bool):
        raise ConfigError(f"{key}.manualApproval: {approval!r} must be true or false")
    if domain is None:
        # The synthetic canary calls each region's listener by the name its certificate is
        # for; without it TLS cannot be verified.
        raise ConfigError(
            f"{key}: also give {PREFIX}domainName, the name the certificates are for (the "
            "synthetic canary checks each region's TLS certificate against it)"
        )
    return PipelineConfig(
        connection_arn=connection,
        repository=repository,
        branch=branch,
        bake_minutes=bake,
        manual_approval=approval,
    )


def parse_config(get: Callable[[str], Any]) -> DeployConfig:
    """Build the config from a context getter (`node.try_get_context` or a dict's `get`)."""

    def ctx(key: str) -> Any:
        return get(PREFIX + key)

    account = str(ctx("account") or "")
    if not _ACCOUNT.match(account):
        raise ConfigError(f"{PREFIX}account: {account!r} is not a 12-digit AWS account id")
    regions = _regions(ctx("regions"))
    global_region = str(ctx("globalRegion") or "us-west-2")
    if not _REGION.match(global_region):
        raise ConfigError(f"{PREFIX}globalRegion: {global_region!r} is not an AWS region name")
    certificates = _str_map(
        "certificateArns",
        ctx("certificateArns"),
        lambda arn: arn.startswith("arn:") and ":acm:" in arn,
        "an ACM certificate ARN",
    )
    zone_id = _optional_str("hostedZoneId", ctx("hostedZoneId"))
    zone_name = _optional_str("hostedZoneName", ctx("hostedZoneName"))
    domain = _optional_str("domainName", ctx("domainName"))
    if zone_id is not None and (zone_name is None or domain is None):
        raise ConfigError(
            f"{PREFIX}hostedZoneId: also give {PREFIX}hostedZoneName and {PREFIX}domainName "
            "(the certificates are issued for the domain, validated in the zone)"
        )
    if zone_id is None:
        missing = [region for region in regions if region not in certificates]
        if missing:
            raise ConfigError(
                f"{PREFIX}certificateArns: no certificate for {', '.join(missing)}; give one "
                f"per region or {PREFIX}hostedZoneId/hostedZoneName/domainName to create them"
            )
    for region in certificates:
        if f":acm:{region}:" not in certificates[region]:
            raise ConfigError(f"{PREFIX}certificateArns.{region}: the ARN is for another region")
    pipeline = _pipeline(ctx("pipeline"), domain)
    if pipeline is not None and f":{account}:" not in pipeline.connection_arn:
        raise ConfigError(f"{PREFIX}pipeline.connectionArn: the connection is in another account")
    return DeployConfig(
        account=account,
        regions=regions,
        global_region=global_region,
        certificate_arns=certificates,
        domain_name=domain,
        hosted_zone_id=zone_id,
        hosted_zone_name=zone_name,
        alarm_email=_optional_str("alarmEmail", ctx("alarmEmail")),
        traffic_dials=_dials(ctx("trafficDials"), regions),
        capacity=_capacity(ctx("capacity")),
        zones=_zones(ctx("availabilityZones"), regions),
        mirror_grace_seconds=_grace(ctx("mirrorGraceSeconds")),
        input_buckets=_buckets(ctx("inputBuckets")),
        # At least twice the global table's typical replication lag (~1 s).
        standby_margin_seconds=_seconds(
            "standbyMarginSeconds",
            ctx("standbyMarginSeconds"),
            r.STANDBY_MARGIN_SECONDS,
            2,
            600,
        ),
        pipeline=pipeline,
        lease_arbiter=_lease_arbiter(ctx("leaseArbiter"), regions),
    )
