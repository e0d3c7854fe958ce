"""Reading h2load: its end-of-run summary, its per-request log, and the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import h2load

# Verbatim from h2load 1.52 (nghttp2-client, Debian 12) against the null server.
STDOUT = """\
starting benchmark...
spawning thread #0: 2 total client(s). 20 total requests
Application protocol: h2c
progress: 100% done

finished in 10.00ms, 2000.60 req/s, 225.46KB/s
requests: 20 total, 20 started, 19 done, 18 succeeded, 1 failed, 1 errored, 0 timeout
status codes: 18 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 2.25KB (2308) total, 1.71KB (1750) headers (space savings 31.64%), 1.14KB (1170) data
                     min         max         mean         sd        +/- sd
time for request:      738us      5.56ms      1.80ms      1.59ms    80.00%
"""


def test_summary_reads_counts_bytes_and_rate() -> None:
    s = h2load.parse_summary(STDOUT)
    assert (s.requests_total, s.started, s.done, s.succeeded) == (20, 20, 19, 18)
    assert (s.failed, s.errored, s.timeout) == (1, 1, 0)
    assert (s.status_2xx, s.status_4xx) == (18, 0)
    assert s.data_bytes == 1170
    assert s.finished_s == pytest.approx(0.010)
    assert s.req_per_s == pytest.approx(2000.60)


@pytest.mark.parametrize(("text", "unit_s"), [("3.5s", 3.5), ("250ms", 0.25), ("900us", 0.0009)])
def test_summary_duration_units(text: str, unit_s: float) -> None:
    s = h2load.parse_summary(STDOUT.replace("finished in 10.00ms", f"finished in {text}"))
    assert s.finished_s == pytest.approx(unit_s)


def test_summary_names_the_missing_lines() -> None:
    with pytest.raises(h2load.H2LoadError, match="no traffic, finished line"):
        h2load.parse_summary(
            "requests: 1 total, 1 started, 1 done, 1 succeeded, 0 failed, "
            "0 errored, 0 timeout\nstatus codes: 1 2xx, 0 3xx, 0 4xx, 0 5xx\n"
        )


def test_log_lines_and_extra_columns() -> None:
    entries = h2load.parse_log("1795494116660075\t200\t1618\n\n1795494116660076\t-1\t5\textra\n")
    assert [(e.start_us, e.http_status, e.duration_us) for e in entries] == [
        (1795494116660075, 200, 1618),
        (1795494116660076, -1, 5),
    ]


def test_log_rejects_a_malformed_line_with_its_number() -> None:
    with pytest.raises(h2load.H2LoadError, match="line 2 is not 3 integer columns"):
        h2load.parse_log("1\t200\t3\n1\t200\n")


def test_argv_carries_grpc_headers_body_log_and_pacing(tmp_path: Path) -> None:
    spec = h2load.LoadSpec(
        url="http://127.0.0.1:1/reportgrid.v1.ReportService/SubmitReport",
        body_file=tmp_path / "body.bin",
        requests=100,
        connections=4,
        streams=10,
        headers=[("content-type", "application/grpc"), ("te", "trailers")],
        rate_per_connection=25.0,
    )
    argv = spec.argv("h2load", tmp_path / "log")
    assert argv[0] == "h2load"
    assert argv[-1] == spec.url
    pairs = dict(zip(argv[1:-1:2], argv[2:-1:2], strict=False))
    assert pairs["-n"] == "100"
    assert pairs["-c"] == "4"
    assert pairs["-m"] == "10"
    assert pairs["-d"] == str(tmp_path / "body.bin")
    assert pairs["--log-file"] == str(tmp_path / "log")
    assert pairs["--rps"] == "25.000"
    assert "content-type: application/grpc" in argv
    assert "te: trailers" in argv


def test_missing_h2load_without_install_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(h2load.H2LoadError, match="apt-get install -y nghttp2-client"):
        h2load.ensure_h2load(install=False)
