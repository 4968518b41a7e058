"""How fast `make run` comes up and how much memory the idle control plane holds.

Starts the stack exactly as `make run` does (`python -m kepler_devstack run`) on a throwaway data dir and
free ports, times until the gateway's /readyz answers 200, idles, then sums VmRSS over the supervisor's
process tree (services, workers, supervisor). That sum counts each shared library once per process, so
the proportional set size (PSS) of the same tree is reported too, for information. Embedded PostgreSQL
and Redis are reported separately, also for information: they are what `make run` adds over
docker-compose, not the control plane itself. Workers start once the gateway is ready, as in `make run`.

    uv run python bench/footprint.py [--idle-seconds 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from kepler_devstack import procfs
from kepler_devstack.embedded import port_is_free

ROOT = Path(__file__).resolve().parent.parent
START_TARGET_S = 15.0
RSS_TARGET_MB = 700.0
START_GIVE_UP_S = 120.0


def free_port_block(start: int = 18000, size: int = 5) -> int:
    """Gateway port with the four service ports after it free too, so a running `make run` is left alone."""
    for first in range(start, 60000, size):
        if all(port_is_free(first + offset) for offset in range(size)):
            return first
    raise SystemExit("no free block of ports")


def start_stack(data_dir: Path, gateway_port: int, log: Path) -> subprocess.Popen[bytes]:
    """The same command `make run` runs; external URLs are dropped so the embedded servers are measured."""
    env = {k: v for k, v in os.environ.items() if k not in ("KEPLER_DATABASE_URL", "KEPLER_REDIS_URL")}
    env |= {"KEPLER_DATA_DIR": str(data_dir), "KEPLER_GATEWAY_PORT": str(gateway_port)}
    with log.open("wb") as sink:
        argv = [sys.executable, "-m", "kepler_devstack", "run"]
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(stack: subprocess.Popen[bytes], port: int) -> float:
    """Seconds from launch until /readyz is 200; the 0.1 s poll adds at most that much."""
    started = time.monotonic()
    while not ready(port):
        if stack.poll() is not None or time.monotonic() - started > START_GIVE_UP_S:
            raise RuntimeError("the stack did not become ready")
        time.sleep(0.1)
    return time.monotonic() - started


def postgres_pids(data_dir: Path) -> list[int]:
    """The postmaster (first line of postmaster.pid) and its backends; pg_ctl detached it from our tree."""
    pidfile = data_dir / "postgres" / "postmaster.pid"
    return procfs.descendants(int(pidfile.read_text().split()[0])) if pidfile.exists() else []


def rss_mb(pids: list[int]) -> float:
    return sum(procfs.rss_kib(pid) for pid in pids) / 1024


def pss_mb(pids: list[int]) -> float:
    return sum(procfs.pss_kib(pid) for pid in pids) / 1024


def breakdown(pids: list[int]) -> str:
    """Per-process RSS, largest first, for finding what to slim down (written to stderr)."""
    rows = sorted(((procfs.rss_kib(pid), " ".join(procfs.cmdline(pid)[1:4])) for pid in pids), reverse=True)
    return "\n".join(f"  {kib / 1024:6.1f} MB  {command}" for kib, command in rows)


def measure(stack_pid: int, data_dir: Path) -> dict[str, float]:
    tree = procfs.descendants(stack_pid)
    redis = [pid for pid in tree if procfs.process_name(pid) == "redis-server"]
    control_plane = [pid for pid in tree if pid not in redis]
    sys.stderr.write(f"control-plane processes (VmRSS):\n{breakdown(control_plane)}\n")
    return {
        "stack.rss_mb": rss_mb(control_plane),
        "stack.pss_mb": pss_mb(control_plane),
        "stack.postgres_rss_mb": rss_mb(postgres_pids(data_dir)),
        "stack.redis_rss_mb": rss_mb(redis),
    }


def report(figure: str, value: float, unit: str, target: str) -> None:
    print(f"BENCH {figure} {value:.1f} {unit} target {target}", flush=True)


def report_all(start_s: float, figures: dict[str, float]) -> None:
    report("stack.start_s", start_s, "s", f"<= {START_TARGET_S:g}")
    report("stack.rss_mb", figures["stack.rss_mb"], "MB", f"<= {RSS_TARGET_MB:g}")
    for figure in ("stack.pss_mb", "stack.postgres_rss_mb", "stack.redis_rss_mb"):
        report(figure, figures[figure], "MB", "none")


def stop_stack(stack: subprocess.Popen[bytes]) -> int:
    """SIGTERM, as Ctrl-C would; the supervisor stops services, then Redis, then PostgreSQL."""
    stack.send_signal(signal.SIGTERM)
    try:
        return stack.wait(60)
    except subprocess.TimeoutExpired:
        stack.kill()
        return stack.wait()


def run(idle_s: float, workdir: Path) -> int:
    data_dir, log, port = workdir / "data", workdir / "stack.log", free_port_block()
    load_before = Path("/proc/loadavg").read_text().split()[0]  # this bench shares the machine's 2 cores
    stack = start_stack(data_dir, port, log)
    try:
        start_s = wait_ready(stack, port)
        time.sleep(idle_s)
        figures = measure(stack.pid, data_dir)
    except RuntimeError as exc:
        stop_stack(stack)
        sys.stderr.write(f"{exc}; last lines of its output:\n{tail(log)}\n")
        return 1
    sys.stderr.write(f"load average before start: {load_before}\n{supervisor_lines(log)}\n")
    report_all(start_s, figures)
    code = stop_stack(stack)
    if code != 0:
        sys.stderr.write(f"the stack exited with {code} on SIGTERM:\n{tail(log)}\n")
    return 0


def supervisor_lines(log: Path) -> str:
    """The devstack's own lines (phase timings, restarts): what explains a slow start."""
    lines = log.read_text(errors="replace").splitlines()
    return "\n".join(line for line in lines if line.startswith("devstack"))


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def main() -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="idle time before measuring memory")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kepler-footprint-"))
    try:
        return run(args.idle_seconds, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
