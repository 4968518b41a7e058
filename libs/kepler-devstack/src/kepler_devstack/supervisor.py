"""A small asyncio process supervisor: one prefixed output stream, restarts with backoff, orderly stop.

Each child runs in its own session, so a Ctrl-C in the terminal reaches only the supervisor, which then
stops the children (SIGTERM, then SIGKILL after a grace period) before the databases they use. Children
also get PR_SET_PDEATHSIG on Linux: if the supervisor itself is SIGKILLed they are terminated rather than
left holding their ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from kepler_devstack.logfmt import child_line, fields, log

MAX_LINE_BYTES = 1 << 20
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


@dataclass(frozen=True)
class ProcessSpec:
    """One long-running child; `env` is layered over the supervisor's environment."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff so a crash-looping service doesn't flood the terminal. A child that stayed up
    for `stable_after_s` seconds failed for a new reason, so its next restart is quick again."""

    initial_s: float = 1.0
    maximum_s: float = 30.0
    stable_after_s: float = 30.0

    def next_delay(self, previous: float | None, uptime: float) -> float:
        if previous is None or uptime >= self.stable_after_s:
            return self.initial_s
        return min(previous * 2, self.maximum_s)


class Shutdown:
    """The first SIGINT/SIGTERM/SIGHUP asks children to stop gracefully; a later one (an impatient Ctrl-C)
    kills them.

    Signals within `debounce_s` of the first count as the same request: `uv run` forwards SIGTERM to us
    while `timeout`/`kill -- -PGID` also signal our group, so one stop request can arrive twice.
    """

    def __init__(self, debounce_s: float = 1.0) -> None:
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()
        self._debounce_s = debounce_s
        self._first_at: float | None = None

    def request(self) -> None:
        now = time.monotonic()
        if self._first_at is None:
            self._first_at = now
            self.requested.set()
        elif now - self._first_at >= self._debounce_s and not self.forced.is_set():
            log.warning("second signal: killing processes now")
            self.forced.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal was closed
            loop.add_signal_handler(sig, self.request)


def die_with_parent() -> None:
    """Runs in the forked child before exec: the kernel SIGTERMs it when the supervisor dies."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def describe_exit(code: int | None) -> str:
    """asyncio reports death by signal as a negative code; say which signal."""
    if code is None:
        return "not started"
    if code >= 0:
        return str(code)
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:  # a real-time signal has no name
        return f"signal {-code}"


async def first_of(*aws: Awaitable[object], at_most_s: float | None = None) -> None:
    """Wait until any awaitable finishes (or `at_most_s` passes) and cancel the rest: the building block
    for "wait for X unless shutdown is requested" without a polling loop."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        await asyncio.wait(tasks, timeout=at_most_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _read_line(stream: asyncio.StreamReader) -> bytes:
    try:
        return await stream.readline()
    except ValueError:  # asyncio drops a line longer than the stream limit
        return b"[line longer than 1 MiB dropped]\n"


def _write(out: TextIO, text: str) -> bool:
    """False once the terminal is gone (e.g. `| tee` killed by the same Ctrl-C)."""
    try:
        out.write(text)
        out.flush()
    except (BrokenPipeError, ValueError):
        return False
    return True


async def pump_lines(prefix: str, stream: asyncio.StreamReader, out: TextIO) -> None:
    """Copy whole lines so output from ten processes interleaves without tearing lines apart. Without a
    terminal, keep draining: a child blocked on a full pipe would never get to its shutdown."""
    echo = True
    while line := await _read_line(stream):
        if echo:
            echo = _write(out, child_line(prefix, line.decode(errors="replace").rstrip()) + "\n")


def _killpg(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Supervisor:
    """Keeps every child running until shutdown is requested, then stops them all."""

    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        env: Mapping[str, str],
        shutdown: Shutdown,
        *,
        out: TextIO | None = None,
        policy: RestartPolicy | None = None,
        stop_timeout_s: float = 10.0,
        width: int | None = None,
        cwd: Path | None = None,
    ) -> None:
        self._specs = tuple(specs)
        self._env = dict(env)
        self._shutdown = shutdown
        self._out = out if out is not None else sys.stdout
        self._policy = policy or RestartPolicy()
        self._stop_timeout_s = stop_timeout_s
        self._width = width or max(len(spec.name) for spec in self._specs)
        self._cwd = cwd
        self.pids: dict[str, int] = {}

    async def run(self) -> None:
        """Returns once shutdown was requested and every child has exited."""
        async with asyncio.TaskGroup() as group:
            for spec in self._specs:
                group.create_task(self._keep_running(spec))

    async def _keep_running(self, spec: ProcessSpec) -> None:
        delay: float | None = None
        while not self._shutdown.requested.is_set():
            started = time.monotonic()
            code = await self.run_once(spec)
            if self._shutdown.requested.is_set():
                return
            delay = self._policy.next_delay(delay, time.monotonic() - started)
            exit_info = fields(proc=spec.name, exit=describe_exit(code), restart_in=f"{delay:g}s")
            log.warning("process died; restarting with backoff", extra=exit_info)
            await first_of(self._shutdown.requested.wait(), at_most_s=delay)

    async def run_once(self, spec: ProcessSpec) -> int | None:
        """Run `spec` until it exits or shutdown is requested; also how one-shot steps (migrations) run."""
        try:
            proc = await self._spawn(spec)
        except OSError as exc:
            log.error("process failed to start", extra=fields(proc=spec.name, error=exc))
            return None
        self.pids[spec.name] = proc.pid
        assert proc.stdout is not None  # noqa: S101  (spawned with stdout=PIPE; narrows the type)
        pump = asyncio.create_task(pump_lines(f"{spec.name:<{self._width}}", proc.stdout, self._out))
        try:
            await first_of(proc.wait(), self._shutdown.requested.wait())
            if proc.returncode is None:
                await self._terminate(spec.name, proc)
        finally:  # cancelled (the supervisor itself failed): never leave the child behind
            if proc.returncode is None:
                _killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):  # a grandchild may still hold the pipe open
            await asyncio.wait_for(pump, 2.0)
        return proc.returncode

    async def _spawn(self, spec: ProcessSpec) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**self._env, **spec.env},
            cwd=self._cwd,
            start_new_session=True,
            preexec_fn=die_with_parent,
            limit=MAX_LINE_BYTES,
        )

    async def _terminate(self, name: str, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM the child's process group; SIGKILL it after the grace period or a second signal."""
        _killpg(proc.pid, signal.SIGTERM)
        await first_of(proc.wait(), self._shutdown.forced.wait(), at_most_s=self._stop_timeout_s)
        if proc.returncode is None:
            forced = self._shutdown.forced.is_set()
            reason = "second signal" if forced else f"{self._stop_timeout_s:g}s timeout"
            log.warning("process did not stop; killing it", extra=fields(proc=name, reason=reason))
            _killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
