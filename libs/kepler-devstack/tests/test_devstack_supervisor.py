"""The supervisor with stand-in children: what a developer sees in the terminal and what survives a stop."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from kepler_devstack import procfs
from kepler_devstack.logfmt import LOGGER_NAME
from kepler_devstack.supervisor import ProcessSpec, RestartPolicy, Shutdown, Supervisor

FAST = RestartPolicy(initial_s=0.05, maximum_s=0.2, stable_after_s=60)
PAUSE = "import signal; signal.pause()"
IGNORE_SIGTERM = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)"


def child(name: str, *statements: str) -> ProcessSpec:
    """A stand-in service: a Python one-liner made of `statements`."""
    return ProcessSpec(name, (sys.executable, "-c", "; ".join(statements)))


async def wait_for_text(out: io.StringIO, text: str, count: int = 1, within_s: float = 10.0) -> None:
    """Startup readiness poll on captured output; fails the test with what was seen."""
    deadline = time.monotonic() + within_s
    while out.getvalue().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} x{count} not seen in:\n{out.getvalue()}"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def supervising(
    specs: list[ProcessSpec], policy: RestartPolicy | None = None, stop_s: float = 10.0
) -> AsyncIterator[tuple[io.StringIO, Supervisor]]:
    out, shutdown = io.StringIO(), Shutdown()
    supervisor = Supervisor(specs, os.environ, shutdown, out=out, policy=policy, stop_timeout_s=stop_s)
    task = asyncio.create_task(supervisor.run())
    try:
        yield out, supervisor
    finally:
        shutdown.request()
        await asyncio.wait_for(task, 15)


@pytest.fixture
def devstack_logs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> pytest.LogCaptureFixture:
    """`configure_logging` stops the devstack logger propagating (it owns its terminal output); undo that."""
    monkeypatch.setattr(logging.getLogger(LOGGER_NAME), "propagate", True)
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    return caplog


def _fields(record: logging.LogRecord) -> dict[str, object]:
    values: dict[str, object] = getattr(record, "fields", {})
    return values


class TestOutput:
    async def test_every_line_is_prefixed_with_the_padded_process_name(self) -> None:
        specs = [
            child("gateway", "print('listening')", "print('ready', flush=True)", PAUSE),
            child("app-worker", "import sys", "sys.stderr.write('warn from stderr\\n')", PAUSE),
        ]
        async with supervising(specs) as (out, _):
            await wait_for_text(out, "ready")
            await wait_for_text(out, "warn from stderr")
        lines = out.getvalue().splitlines()
        assert "gateway    | listening" in lines
        assert "gateway    | ready" in lines
        assert "app-worker | warn from stderr" in lines

    async def test_undecodable_bytes_do_not_stop_the_stream(self) -> None:
        write = "import sys; sys.stdout.buffer.write(b'bad \\xff byte\\nafter\\n'); sys.stdout.flush()"
        async with supervising([child("svc", write, PAUSE)]) as (out, _):
            await wait_for_text(out, "svc | after")
        assert "svc | bad \ufffd byte" in out.getvalue()

    async def test_a_closed_terminal_neither_crashes_nor_blocks_the_supervisor(self) -> None:
        closed, shutdown = io.StringIO(), Shutdown()
        closed.close()
        chatty = child("chatty", "import itertools", "[print('x' * 1000) for _ in itertools.count()]")
        supervisor = Supervisor([chatty], os.environ, shutdown, out=closed)
        task = asyncio.create_task(supervisor.run())
        await asyncio.sleep(0.5)  # far more than a pipe buffer's worth of output
        shutdown.request()
        await asyncio.wait_for(task, 10)
        assert not procfs.pid_alive(supervisor.pids["chatty"])


class TestDeath:
    async def test_a_dead_process_is_reported_and_restarted_with_backoff(
        self, devstack_logs: pytest.LogCaptureFixture
    ) -> None:
        crashing = child("build-service", "print('boot', flush=True)", "raise SystemExit(3)")
        async with supervising([crashing], policy=FAST) as (out, _):
            await wait_for_text(out, "build-service | boot", count=3)
        deaths = [r for r in devstack_logs.records if r.getMessage().startswith("process died")]
        assert _fields(deaths[0]) == {"proc": "build-service", "exit": "3", "restart_in": "0.05s"}
        assert _fields(deaths[1])["restart_in"] == "0.1s"

    async def test_death_by_signal_names_the_signal(self, devstack_logs: pytest.LogCaptureFixture) -> None:
        suicidal = child("svc", "import os, signal", "print('boot', flush=True)", "os.kill(os.getpid(), 9)")
        async with supervising([suicidal], policy=FAST) as (out, _):
            await wait_for_text(out, "svc | boot", count=2)  # so it died at least once
        assert _fields(devstack_logs.records[0])["exit"] == "signal SIGKILL"

    async def test_a_missing_executable_is_reported_and_the_rest_keep_running(
        self, devstack_logs: pytest.LogCaptureFixture
    ) -> None:
        ghost = ProcessSpec("ghost", ("/nonexistent/binary",))
        specs = [ghost, child("alive", "print('up', flush=True)", PAUSE)]
        async with supervising(specs, policy=FAST) as (out, _):
            await wait_for_text(out, "alive | up")
            await asyncio.sleep(0.2)
        assert "alive | up" in out.getvalue()
        ghosts = [r for r in devstack_logs.records if _fields(r).get("proc") == "ghost"]
        assert any(r.getMessage() == "process failed to start" for r in ghosts)


class TestRestartPolicy:
    def test_backoff_doubles_up_to_the_cap_and_resets_after_a_stable_run(self) -> None:
        policy = RestartPolicy(initial_s=1, maximum_s=4, stable_after_s=30)
        delays = [policy.next_delay(None, 0.1)]
        for _ in range(3):
            delays.append(policy.next_delay(delays[-1], 0.1))
        assert delays == [1, 2, 4, 4]
        assert policy.next_delay(4, uptime=31) == 1


class TestShutdown:
    async def test_a_duplicate_signal_is_not_a_second_request(self) -> None:
        shutdown = Shutdown(debounce_s=10)
        shutdown.request()
        shutdown.request()
        assert shutdown.requested.is_set()
        assert not shutdown.forced.is_set()

    async def test_a_later_signal_forces(self) -> None:
        shutdown = Shutdown(debounce_s=0)
        shutdown.request()
        shutdown.request()
        assert shutdown.forced.is_set()

    async def test_stop_terminates_children_and_kills_those_ignoring_sigterm(self) -> None:
        specs = [
            child("polite", "print('up', flush=True)", PAUSE),
            child("stubborn", IGNORE_SIGTERM, "print('up', flush=True)", PAUSE),
        ]
        started = time.monotonic()
        async with supervising(specs, stop_s=0.5) as (out, supervisor):
            await wait_for_text(out, "| up", count=2)
            pids = dict(supervisor.pids)
        assert time.monotonic() - started < 5
        assert not any(procfs.pid_alive(pid) for pid in pids.values())


STANDIN_STACK = f"""
import asyncio, json, os, sys
from kepler_devstack.logfmt import configure_logging
from kepler_devstack.supervisor import ProcessSpec, Shutdown, Supervisor

def child(name, *statements):
    return ProcessSpec(name, (sys.executable, "-c", "; ".join(statements)))

async def main():
    shutdown = Shutdown()
    shutdown.install_signal_handlers()
    specs = [child("web", {PAUSE!r}),
             child("forks", "import subprocess, sys",
                   "subprocess.Popen([sys.executable, '-c', {PAUSE!r}])", {PAUSE!r}),
             child("stubborn", {IGNORE_SIGTERM!r}, {PAUSE!r})]
    supervisor = Supervisor(specs, os.environ, shutdown, stop_timeout_s=1.0)
    task = asyncio.create_task(supervisor.run())
    await asyncio.sleep(0.5)
    print(json.dumps(supervisor.pids), flush=True)
    await task
    print("supervisor returned", flush=True)

configure_logging(sys.stdout, 8)
asyncio.run(main())
"""


def _start_standin_stack() -> tuple[subprocess.Popen[str], dict[str, int]]:
    stack = subprocess.Popen([sys.executable, "-c", STANDIN_STACK], stdout=subprocess.PIPE, text=True)
    assert stack.stdout is not None
    return stack, json.loads(stack.stdout.readline())


def test_sigterm_stops_every_child_and_grandchild_and_exits_cleanly() -> None:
    stack, pids = _start_standin_stack()
    everyone = [pid for pid in procfs.descendants(stack.pid) if pid != stack.pid]
    assert len(everyone) == 4  # three children and the grandchild
    stack.send_signal(signal.SIGTERM)
    output, _ = stack.communicate(timeout=15)
    assert stack.returncode == 0
    assert [pid for pid in everyone if procfs.pid_alive(pid)] == []
    assert "process did not stop; killing it proc=stubborn reason='1s timeout'" in output
    assert output.rstrip().endswith("supervisor returned")


def test_children_die_with_a_killed_supervisor() -> None:
    stack, pids = _start_standin_stack()
    stack.kill()
    stack.communicate(timeout=5)
    try:
        assert procfs.wait_exit(pids["web"], 5)
        assert procfs.wait_exit(pids["forks"], 5)
    finally:  # "stubborn" ignores the parent-death SIGTERM by design; don't leak it
        os.kill(pids["stubborn"], signal.SIGKILL)
