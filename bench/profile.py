"""Sampling the server under load with py-spy, and reading the samples.

`python -m bench --profile DIR ...` runs py-spy (`record --format raw --nonblocking`) on
the server process during each saturated run and writes DIR/<scenario>.txt: collapsed
stacks, one line per distinct stack with its sample count. `python -m bench.profile FILE`
prints where the time went: the functions with the most samples, by self and by total
(inclusive) time. py-spy runs pinned to the load CPUs, so it does not take the server's CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

PY_SPY_HINT = "py-spy is missing: `uv pip install py-spy` into .venv, or put it on PATH"


def py_spy_binary() -> str:
    local = Path(sys.executable).parent / "py-spy"
    found = str(local) if local.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError(PY_SPY_HINT)
    return found


class Sampler:
    """py-spy attached to `pid` until stop() (SIGINT makes it write what it sampled)."""

    def __init__(self, pid: int, out: Path, cpus: set[int] | None, rate: int = 250) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        self.out = out

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        self.process = subprocess.Popen(
            [
                py_spy_binary(),
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                # Native stacks (BENCH_PROFILE_NATIVE=1) need the process paused per sample.
                *(["--native"] if os.environ.get("BENCH_PROFILE_NATIVE") else ["--nonblocking"]),
                "--subprocesses",
                "--rate",
                str(rate),
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=pin,  # noqa: PLW1509 -- only sched_setaffinity
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def sampling(pid: int, out_dir: Path | None, name: str, cpus: set[int] | None) -> Iterator[None]:
    """Sample `pid` into out_dir/<name>.txt for the duration of the block (no-op if None)."""
    if out_dir is None:
        yield
        return
    sampler = Sampler(pid, out_dir / f"{name}.txt", cpus)
    try:
        yield
    finally:
        sampler.stop()


def _frame_name(frame: str) -> str:
    # py-spy raw frames read "function (path/to/file.py:line)"; the line varies per sample.
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    return f"{name} ({Path(path).name})" if path else name


def summarize(collapsed: str, top: int = 30) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame_name(f) for f in stack.split(";")]
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "self %   function"]
    lines += [f"{100 * n / total:6.1f}   {name}" for name, n in own.most_common(top)]
    lines += ["", "total %  function"]
    lines += [f"{100 * n / total:6.1f}   {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("file", type=Path, help="collapsed stacks written by --profile")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    print(summarize(args.file.read_text(), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
