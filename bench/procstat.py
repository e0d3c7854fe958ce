"""CPU seconds of a server's whole process tree, from /proc/<pid>/stat.

The edge and the null server fork workers, so the figure is the sum over the parent and
every live descendant. Taken before and after a run while the workers are alive, the
difference is what the server spent on that run, whatever moto or h2load cost.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
PROC: Final = Path("/proc")


def parse_stat(text: str) -> tuple[int, int, float]:
    """(pid, ppid, utime+stime in seconds) from one /proc/<pid>/stat line.

    The command name (field 2) is in parentheses and may itself contain spaces and
    parentheses, so split after the LAST ')'."""
    pid = int(text[: text.index(" ")])
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    ppid = int(rest[1])
    utime, stime = int(rest[11]), int(rest[12])
    return pid, ppid, (utime + stime) / CLOCK_TICKS


def _all_stats(proc: Path = PROC) -> dict[int, tuple[int, float]]:
    stats: dict[int, tuple[int, float]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            pid, ppid, cpu = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        stats[pid] = (ppid, cpu)
    return stats


def tree_pids(root: int, stats: dict[int, tuple[int, float]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _cpu) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(root: int, proc: Path = PROC) -> float:
    """utime+stime of `root` and all its live descendants, in seconds."""
    stats = _all_stats(proc)
    return sum(stats[pid][1] for pid in tree_pids(root, stats) if pid in stats)


def own_cpu_seconds(pid: int, proc: Path = PROC) -> float:
    """utime+stime of `pid` alone (its threads, not its children)."""
    return parse_stat((proc / str(pid) / "stat").read_text())[2]


def pin(pid: int, cpus: set[int]) -> bool:
    """Pin a process and all its threads (False if the kernel refuses)."""
    try:
        for task in (PROC / str(pid) / "task").iterdir():
            os.sched_setaffinity(int(task.name), cpus)
    except OSError:
        return False
    return True


def pin_tree(root: int, cpus: set[int]) -> None:
    stats = _all_stats()
    for pid in tree_pids(root, stats):
        pin(pid, cpus)
