"""The harness end to end against the null server, with a real h2load: the smoke scenario
passes, and a call that ends with a gRPC error (HTTP 200 for h2load) fails the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import __main__ as bench_main
from bench import h2load, payloads, scenarios
from bench.servers import NullServer


@pytest.fixture(scope="module")
def h2load_binary() -> str:
    # Never a skip: the harness installs h2load itself (nghttp2-client, as root with apt);
    # when it cannot, the test fails with the installer's own message saying what is missing.
    try:
        return h2load.ensure_h2load()
    except h2load.H2LoadError as err:
        pytest.fail(f"h2load is needed and could not be installed: {err}")


@pytest.mark.slow
def test_smoke_run_writes_clean_results(h2load_binary: str, tmp_path: Path) -> None:
    code = bench_main.main(["--smoke", "--out", str(tmp_path), "--docs", str(tmp_path / "P.md")])
    assert code == 0
    results = {p.name.split("-", 3)[-1]: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    submit = results["null-submit.json"]
    assert submit["problems"] == []
    assert submit["statuses"] == {"OK": submit["calls_sent"]}
    assert submit["throughput_rps"] > 0
    assert set(submit["latency_ms_half_saturation"]) >= {"p50", "p90", "p99", "p99.9"}
    assert submit["server_cpu_us_per_request"] > 0
    assert (tmp_path / "performance.png").exists()
    assert "| null-submit |" in (tmp_path / "P.md").read_text()


@pytest.mark.slow
def test_grpc_errors_behind_http_200_fail_the_scenario(h2load_binary: str, tmp_path: Path) -> None:
    # Given a scenario whose method the null server does not implement: every call ends
    # UNIMPLEMENTED, which h2load counts as a success (HTTP 200)
    ids = payloads.codec()
    hot = payloads.succeeded_record(ids)
    replies = payloads.Replies.build(ids, hot)
    ctx = scenarios.Context(
        h2load_binary=h2load_binary,
        work_dir=tmp_path,
        cpus=scenarios.CpuPlan.detect(),
        api_key=bench_main.BENCH_API_KEY,
        servers={
            "null": lambda: NullServer(work_dir=tmp_path, cpus=None, workers=1, replies=replies)
        },
        requests={"null": {"CancelReport": payloads.get_request(hot.report_id)}},
    )
    sc = scenarios.Scenario(
        "null-cancel", "null", "CancelReport", 300, 5, 5, "bad", paced=False, warmup=0
    )
    # When it runs, the first call already fails
    with pytest.raises(scenarios.ScenarioError, match="UNIMPLEMENTED"):
        scenarios.run_scenario(sc, ctx)


@pytest.mark.slow
def test_status_counters_and_data_bytes_catch_errors_h2load_calls_success(
    h2load_binary: str, tmp_path: Path
) -> None:
    # Given the null server and h2load sending to a method it does not implement
    ids = payloads.codec()
    replies = payloads.Replies.build(ids, payloads.succeeded_record(ids))
    server = NullServer(work_dir=tmp_path, cpus=None, workers=1, replies=replies)
    body = tmp_path / "body.bin"
    body.write_bytes(b"\x00\x00\x00\x00\x00")
    with server:
        spec = h2load.LoadSpec(
            url=f"http://127.0.0.1:{server.port}/{payloads.SERVICE}/CancelReport",
            body_file=body,
            requests=200,
            connections=4,
            streams=4,
            headers=scenarios.GRPC_HEADERS,
        )
        result = h2load.run(spec, binary=h2load_binary, work_dir=tmp_path)
    # Then h2load sees 200 successes, but the DATA check and the server's counters do not
    assert result.summary.succeeded == 200
    problems = scenarios._check_run("run", result, frame_bytes=65)
    assert any("0 replies of 65 bytes" in p for p in problems)
    assert server.status_counts("CancelReport") == {}
    assert len(result.log) == 200
