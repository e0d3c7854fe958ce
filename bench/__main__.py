"""`make bench` / `make bench-smoke`: run the load scenarios, print the table, write the
results (bench/results/<date>-<scenario>.json) and docs/PERFORMANCE.md with its plot.

    python -m bench                    every scenario (under 10 minutes on 2 cores)
    python -m bench --smoke            a few thousand calls on the null server (< 30 s)
    python -m bench --only null-submit,edge-submit
Exit status: 0 when every scenario ran with only the statuses it expected; 1 otherwise;
2 when h2load is missing and could not be installed.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import h2load, payloads, report, scenarios, worker
from bench.servers import NullServer

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "PERFORMANCE.md"
PLOT = ROOT / "docs" / "performance.png"
BENCH_API_KEY = "rg_" + "b" * 43  # the null server ignores it; the edge scenarios seed their own


def raise_fd_limit() -> None:
    """1,000 connections need more than the usual 1,024 descriptors, in h2load and the server
    alike (children inherit the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def machine() -> str:
    return (
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}, load average at start "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--smoke", action="store_true", help="a short run on the null server")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply request counts")
    parser.add_argument("--no-edge", action="store_true", help="null server scenarios only")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results directory (default: bench/results; a temporary one for --smoke)",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=None,
        help="write PERFORMANCE.md here (default: docs/PERFORMANCE.md for a full "
        "run, none for --smoke)",
    )
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument(
        "--note", action="append", default=[], help="a note printed above the figures (repeatable)"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="sample the server with py-spy during each saturated run; collapsed stacks "
        "go to DIR/<scenario>.txt (read them with `python -m bench.profile FILE`)",
    )
    return parser.parse_args(argv)


def choose(args: argparse.Namespace) -> tuple[list[scenarios.Scenario], Any]:
    """The scenarios to run, and the edge module when any edge scenario is among them."""
    chosen = scenarios.smoke_scenarios() if args.smoke else scenarios.null_scenarios(args.scale)
    edge_setup: Any = None
    if not args.smoke and not args.no_edge:
        from bench import edge

        chosen += edge.edge_scenarios(args.scale)
        edge_setup = edge
    chosen += [] if args.smoke else worker.worker_scenarios(args.scale)
    if args.only:
        wanted = {name.strip() for name in args.only.split(",") if name.strip()}
        unknown = wanted - {s.name for s in chosen}
        if unknown:
            raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
        chosen = [s for s in chosen if s.name in wanted]
    if not any(s.server != "null" for s in chosen):
        edge_setup = None
    return chosen, edge_setup


def null_context(binary: str, work: Path, hot: Any) -> scenarios.Context:
    plan = scenarios.CpuPlan.detect()
    replies = payloads.Replies.build(payloads.codec(), hot)
    return scenarios.Context(
        h2load_binary=binary,
        work_dir=work,
        cpus=plan,
        api_key=BENCH_API_KEY,
        servers={
            "null": lambda: NullServer(work_dir=work, cpus=plan.server, workers=1, replies=replies)
        },
        requests={
            "null": {
                payloads.SUBMIT: payloads.submit_request(),
                payloads.GET: payloads.get_request(hot.report_id),
            }
        },
    )


def run_all(
    chosen: list[scenarios.Scenario], ctx: scenarios.Context, notes: list[str]
) -> list[dict[str, Any]]:
    results = []
    for sc in chosen:
        if sc.server not in ctx.servers:
            print(f"-- {sc.name}: skipped ({sc.server} is not available)", flush=True)
            notes.append(f"{sc.name} skipped: {sc.server} is not available")
            continue
        print(f"-- {sc.name}: {sc.description}", flush=True)
        try:
            result = scenarios.run_scenario(sc, ctx)
        except Exception as err:
            print(f"   FAILED to run: {err}", flush=True)
            notes.append(f"{sc.name} could not run: {err}")
            continue
        results.append(result)
        print(
            f"   {result['throughput_rps']:,.0f} req/s, "
            f"{result['server_cpu_us_per_request']:.0f} us server CPU/req, "
            f"problems: {len(result['problems'])}",
            flush=True,
        )
        for problem in result["problems"]:
            print(f"   ! {problem}", flush=True)
        for warning in result["warnings"]:
            print(f"   ~ {warning}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen, edge_setup = choose(args)
    if args.list:
        for sc in chosen:
            print(f"{sc.name:24} {sc.description}")
        return 0
    try:
        binary = h2load.ensure_h2load()
    except h2load.H2LoadError as err:
        print(f"bench: {err}", file=sys.stderr)
        return 2
    raise_fd_limit()
    date = time.strftime("%Y-%m-%d")
    started = time.monotonic()
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    hot = payloads.succeeded_record(payloads.codec())
    with tempfile.TemporaryDirectory(prefix="reportgrid-bench-") as tmp:
        ctx = null_context(binary, Path(tmp), hot)
        ctx.profile_dir = args.profile
        notes = [ctx.cpus.note, *args.note]
        try:
            if edge_setup is not None:
                notes += edge_setup.prepare(ctx, [s for s in chosen if s.server != "null"], hot)
            results = run_all(chosen, ctx, notes)
        finally:
            if edge_setup is not None:
                edge_setup.teardown(ctx)
    print()
    print(report.table(results))
    print()
    print(report.targets_table(results))
    for note in notes:
        print(f"note: {note}")
    out = args.out or (Path(tempfile.mkdtemp(prefix="bench-smoke-")) if args.smoke else RESULTS_DIR)
    paths = report.write_results(results, out, date)
    print(f"\n{len(paths)} result file(s) in {out}; {time.monotonic() - started:.0f}s in all")
    docs = None if args.no_docs else (args.docs or (None if args.smoke else DOCS))
    if docs is not None and results:
        plot_path = report.plot(results, docs.parent / "performance.png")
        docs.write_text(
            report.performance_md(
                results,
                date=date,
                command=command,
                plot_path=plot_path.name,
                machine=machine(),
                notes=notes,
                findings=report.kept_findings(docs),
            )
        )
        print(f"wrote {docs} and {plot_path}")
    failed = [r["scenario"] for r in results if r["problems"]]
    if len(results) < len(chosen) or failed:
        print(f"bench: FAILED ({', '.join(failed) or 'a scenario did not run'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
