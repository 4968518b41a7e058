"""Just enough of /proc to manage servers we did not spawn directly (the postmaster) and to measure memory.

Reading /proc instead of importing psutil keeps the supervisor small; the devstack targets Linux and falls
back to `os.kill(pid, 0)` where /proc is missing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields after `(comm)`: comm may contain spaces and parentheses, so split after the last `)`."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def pid_alive(pid: int) -> bool:
    """A zombie counts as dead: an exited postmaster may linger until its adoptive parent reaps it."""
    if not PROC.is_dir():
        return _kill_probe(pid)
    stat = _stat_fields(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _kill_probe(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_name(pid: int) -> str | None:
    """The kernel's short name (`postgres`, `redis-server`): survives setproctitle rewriting argv."""
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def process_cwd(pid: int) -> Path | None:
    """redis-server chdirs into its --dir, which identifies which data directory a stray server owns."""
    try:
        return (PROC / str(pid) / "cwd").readlink()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def wait_exit(pid: int, timeout: float, interval: float = 0.05) -> bool:
    """Poll because the postmaster is not our child: there is no wait() to block on."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def rss_kib(pid: int) -> int:
    """Resident set size from /proc/<pid>/status; 0 for a process that is gone (or a kernel thread)."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages (libpython, C extensions) split between the processes mapping
    them, so summing it over a process tree does not count a shared library once per process."""
    try:
        rollup = (PROC / str(pid) / "smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    for line in rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def cmdline(pid: int) -> list[str]:
    try:
        return (PROC / str(pid) / "cmdline").read_text().rstrip("\0").split("\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []


def descendants(root: int) -> list[int]:
    """`root` and every process below it, found from each process's parent pid."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        stat = _stat_fields(int(entry.name)) if entry.name.isdigit() else None
        if stat is not None:
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found
