"""`make run` as a test meets it: the devstack in a subprocess with a data dir and ports of its own.

The end-to-end tests (the stack surviving a restart, the README's commands, the conformance tier) all
start the platform this way, so they meet it exactly as a user's terminal does.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from kepler_devstack.embedded import port_is_free

SANDBOX_OFFSET = 10  # the simulated cluster listens ten ports above the gateway


def free_port_block(size: int = SANDBOX_OFFSET + 1, first: int = 31000) -> int:
    """The gateway, the four services after it and (at +10) the sandbox cluster."""
    for start in range(first, 40000, size):
        if all(port_is_free(start + i) for i in range(size)):
            return start
    raise RuntimeError("no free ports")


class RunningStack:
    """`python -m kepler_devstack run` on `port`, keeping its data in `data_dir` and its output in `log`."""

    def __init__(self, root: Path, data_dir: Path, port: int, log: Path, *, sandbox: bool = False) -> None:
        self.root, self.data_dir, self.port, self.log, self.sandbox = root, data_dir, port, log, sandbox
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        """A shell at the checkout: no database URLs (the stack is embedded), `uv` on PATH as `make` needs."""
        env = {k: v for k, v in os.environ.items() if k not in ("KEPLER_DATABASE_URL", "KEPLER_REDIS_URL")}
        uv = (
            os.environ.get("UV")
            or shutil.which("uv")
            or shutil.which("uv", path=str(self.root / ".tools/bin"))
        )
        path = f"{Path(uv).parent}{os.pathsep}{env.get('PATH', '')}" if uv else env.get("PATH", "")
        env |= {"KEPLER_DATA_DIR": str(self.data_dir), "KEPLER_GATEWAY_PORT": str(self.port), "PATH": path}
        return env | ({"KEPLER_SANDBOX": "1"} if self.sandbox else {})

    def start(self, timeout: float = 120) -> None:
        with self.log.open("ab") as sink:
            argv = [sys.executable, "-m", "kepler_devstack", "run"]
            self.process = subprocess.Popen(
                argv, cwd=self.root, env=self.env(), stdout=sink, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            assert self.process.poll() is None, self.tail()
            assert time.monotonic() < deadline, "the stack did not become ready:\n" + self.tail()
            time.sleep(0.3)

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> int:
        """SIGTERM, as Ctrl-C would; killed after a minute. The exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text()[-chars:] if self.log.exists() else ""

    def create_admin(self, email: str, password: str) -> None:
        """The README's first-admin command (`make admin` runs it), finding this stack's database."""
        argv = [
            sys.executable,
            "-m",
            "kepler_gateway.admin",
            "create-admin",
            "--email",
            email,
            "--password-stdin",
        ]
        result = subprocess.run(
            argv,
            input=password + "\n",
            text=True,
            capture_output=True,
            check=False,
            env=self.env(),
            cwd=self.root,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def login(self, email: str, password: str) -> str:
        """An access token."""
        response = httpx.post(f"{self.url}/api/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


@contextmanager
def running_stack(
    root: Path, tmp: Path, *, sandbox: bool = False, start: bool = True
) -> Iterator[RunningStack]:
    """A stack on free ports in `tmp`; stopped (or killed) however the test ends."""
    stack = RunningStack(root, tmp / "data", free_port_block(), tmp / "stack.log", sandbox=sandbox)
    try:
        if start:
            stack.start()
        yield stack
    finally:
        stack.stop()
