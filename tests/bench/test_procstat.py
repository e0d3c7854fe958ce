"""Server CPU seconds from /proc, over a whole process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench import procstat


def test_parse_stat_survives_parentheses_and_spaces_in_the_name() -> None:
    line = "4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0"
    pid, ppid, cpu = procstat.parse_stat(line)
    assert (pid, ppid) == (4242, 17)
    assert cpu == (250 + 50) / procstat.CLOCK_TICKS


def test_tree_cpu_includes_a_busy_child() -> None:
    # Given a parent that starts a child burning CPU for ~0.3 s and then sleeps
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', "
        "'import time\\nend=time.process_time()+0.3\\nwhile time.process_time()<end: pass\\n"
        "time.sleep(30)'])\n"
        "time.sleep(30)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 10
        cpu = 0.0
        while time.monotonic() < deadline:
            cpu = procstat.tree_cpu_seconds(parent.pid)
            if cpu >= 0.3:
                break
            time.sleep(0.1)
        # Then the tree's CPU counts the child's work, though the parent itself is idle
        assert cpu >= 0.3
        own = procstat.parse_stat(Path(f"/proc/{parent.pid}/stat").read_text())[2]
        assert own < 0.3
        assert len(procstat.tree_pids(parent.pid, procstat._all_stats())) == 2
    finally:
        for pid in procstat.tree_pids(parent.pid, procstat._all_stats()):
            if pid != parent.pid:
                os.kill(pid, 9)
        parent.kill()
        parent.wait()


def test_pin_sets_affinity_of_every_thread() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        cpu = min(os.sched_getaffinity(0))
        assert procstat.pin(child.pid, {cpu})
        assert os.sched_getaffinity(child.pid) == {cpu}
    finally:
        child.kill()
        child.wait()
