"""`reportgrid-dev` (a whole region, or two, on this machine) and `reportgrid-drill` (fault
drills against them): the developer's commands, shipped only with the dev stack."""

# ruff: noqa: PLR0917 -- typer maps each CLI option to one parameter of the command

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from reportgrid.local.deployed import DeploymentError
from reportgrid.local.dev import DevError, DevOptions, run
from reportgrid.local.drill import DrillOptions, figures_json, run_region_loss
from reportgrid.local.launch import parse_tuning
from reportgrid.local.servers import ServerError
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.wire import EDGE_PORT

err = Console(stderr=True, highlight=False, soft_wrap=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

dev_app = typer.Typer(name="reportgrid-dev", pretty_exceptions_enable=False, add_completion=False)
drill_app = typer.Typer(
    name="reportgrid-drill",
    help="Fault drills against local regions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@dev_app.command()
def dev(
    port: Annotated[int, typer.Option("--port", help="The edge's gRPC port.")] = EDGE_PORT,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Edge worker processes.")] = 1,
    moto_port: Annotated[
        int, typer.Option("--moto-port", help="Port of the moto server (0 = any free).")
    ] = 0,
    redis_port: Annotated[
        int, typer.Option("--redis-port", help="Port of redis-server (0 = any free).")
    ] = 0,
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="Where logs and kept state live.")
    ] = Path(".reportgrid"),
    persist: Annotated[
        bool,
        typer.Option("--persist", help="Keep reports, results, API key and cache across runs."),
    ] = False,
    region: Annotated[str, typer.Option("--region", help="The AWS region to act as.")] = (
        "us-east-1"
    ),
    shards: Annotated[int, typer.Option("--shards", min=1, help="Kinesis shards.")] = 2,
    regions: Annotated[
        str,
        typer.Option(
            "--regions",
            help="Two regions, e.g. us-east-1,eu-west-1: each its own edge (--port, --port+1), "
            "workers, standby and Redis, mirrored to the other, on one moto server.",
        ),
    ] = "",
    tune: Annotated[
        list[str] | None,
        typer.Option(
            "--tune",
            help="NAME=VALUE (repeatable): a setting tests and drills may shorten "
            "(launch.TUNING_OVERRIDES), for the functions and workers.",
        ),
    ] = None,
) -> None:
    """Run a whole region on this machine (moto, redis, edge, stream + queue workers)."""
    region_list = tuple(r.strip() for r in regions.split(",") if r.strip())
    if region_list and len(region_list) != 2:
        raise typer.BadParameter("give exactly two regions, e.g. us-east-1,eu-west-1")
    try:
        tuning = parse_tuning(tune or [])
    except DeploymentError as error:
        raise typer.BadParameter(str(error)) from None

    code = run(
        DevOptions(
            edge_port=port,
            edge_workers=workers,
            moto_port=moto_port,
            redis_port=redis_port,
            state_dir=state_dir,
            persist=persist,
            region=region,
            shards=shards,
            regions=region_list,
            extra_env=tuple(tuning.items()),
        )
    )
    raise typer.Exit(code)


@drill_app.callback()
def drills() -> None:
    """Fault drills against local regions (a callback, so that even a single drill is a
    subcommand: `reportgrid-drill region-loss`, as documented)."""


@drill_app.command("region-loss")
def drill_region_loss(
    regions: Annotated[
        str, typer.Option("--regions", help="Home and peer region.")
    ] = "us-east-1,eu-west-1",
    port: Annotated[
        int, typer.Option("--port", help="Edge port of region A (B: +1); 0 = any free.")
    ] = 0,
    rate: Annotated[float, typer.Option("--rate", min=0.5, help="Submits per second.")] = 5.0,
    before: Annotated[float, typer.Option("--before", help="Seconds before the kill.")] = 5.0,
    after: Annotated[float, typer.Option("--after", help="Seconds of load after it.")] = 8.0,
    durability: Annotated[
        str, typer.Option("--durability", help="multi-region or regional.")
    ] = "multi-region",
    latency_samples: Annotated[
        int, typer.Option("--latency-samples", min=0, help="Submits per durability timed.")
    ] = 100,
    replication_lag: Annotated[
        float,
        typer.Option(
            "--replication-lag", min=0.0, help="Seconds the table replicator delays each change."
        ),
    ] = 0.2,
    margin: Annotated[
        float, typer.Option("--margin", min=0.0, help="The standby's margin, seconds.")
    ] = 1.0,
    lease_arbiter: Annotated[
        bool,
        typer.Option(
            "--lease-arbiter",
            help="Claim through the lease arbiter (regions of one MRSC set, e.g. "
            "us-east-1,us-east-2).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Lose region A under load (SIGKILL) and measure: acknowledged reports completed,
    results produced twice, recovery time, time to all terminal, A's backlog on return."""
    pair = tuple(r.strip() for r in regions.split(","))
    if len(pair) != 2 or pair[0] == pair[1]:
        raise typer.BadParameter("give two distinct regions, e.g. us-east-1,eu-west-1")
    levels = {"multi-region": pb.DURABILITY_MULTI_REGION, "regional": pb.DURABILITY_REGIONAL}
    if durability not in levels:
        raise typer.BadParameter("--durability is multi-region or regional")
    options = DrillOptions(
        regions=(pair[0], pair[1]),
        edge_port=port,
        rate_per_second=rate,
        before_kill_seconds=before,
        after_kill_seconds=after,
        durability=levels[durability],
        latency_samples=latency_samples,
        replication_lag_seconds=replication_lag,
        margin_seconds=margin,
        arbiter=lease_arbiter,
    )
    try:
        figures = run_region_loss(options, sys.stderr if as_json else sys.stdout)
    except (DevError, ServerError) as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(2) from None
    if as_json:
        print(figures_json(figures))
    raise typer.Exit(0 if figures.passed else 1)


def dev_main() -> None:
    """The `reportgrid-dev` console script."""
    dev_app()


def drill_main() -> None:
    """The `reportgrid-drill` console script."""
    drill_app()
