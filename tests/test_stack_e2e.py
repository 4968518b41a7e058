"""`make run` as a user meets it: the embedded stack comes up, the gateway serves every service's API,
and what was created survives a stop and a start."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kepler_devstack.embedded import port_is_free

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a long enough passphrase"


def free_port_block(size: int = 5) -> int:
    for first in range(18600, 30000, size):
        if all(port_is_free(first + i) for i in range(size)):
            return first
    raise RuntimeError("no free ports")


class Stack:
    def __init__(self, data_dir: Path, port: int, log: Path) -> None:
        self.data_dir, self.port, self.log = data_dir, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("KEPLER_DATABASE_URL", "KEPLER_REDIS_URL")}
        return env | {"KEPLER_DATA_DIR": str(self.data_dir), "KEPLER_GATEWAY_PORT": str(self.port)}

    def start(self) -> None:
        with self.log.open("ab") as sink:
            argv = [sys.executable, "-m", "kepler_devstack", "run"]
            self.process = subprocess.Popen(
                argv, cwd=ROOT, env=self.env(), stdout=sink, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.3)
        raise AssertionError("the stack did not become ready:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(timeout=60) == 0, self.log.read_text()[-3000:]

    def create_admin(self) -> None:
        database = f"postgresql+asyncpg://postgres@/postgres?host={self.data_dir / 'postgres'}"
        argv = [sys.executable, "-m", "kepler_gateway.admin", "create-admin", "--email", "admin@example.com"]
        result = subprocess.run(
            [*argv, "--password-stdin"], input=PASSWORD + "\n", text=True, capture_output=True, check=False,
            env={**self.env(), "KEPLER_DATABASE_URL": database}, cwd=ROOT,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    def token(self) -> str:
        body = {"email": "admin@example.com", "password": PASSWORD}
        response = httpx.post(f"{self.url}/api/v1/auth/login", json=body, timeout=10)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path / "data", free_port_block(), tmp_path / "stack.log")
    try:
        yield stack
    finally:
        if stack.process is not None and stack.process.poll() is None:
            stack.process.kill()
            stack.process.wait()


def test_make_run_serves_everything_and_keeps_data_across_restarts(stack: Stack) -> None:
    stack.start()
    ready = httpx.get(f"{stack.url}/readyz").json()
    assert {c["name"] for c in ready["checks"]} >= {"database", "redis", "app-service", "terminal-service"}
    assert {"worker kepler:app-service", "worker kepler:build-service"} <= {
        c["name"] for c in ready["checks"]
    }
    paths = httpx.get(f"{stack.url}/openapi.json").json()["paths"]
    for service in ("app-service", "build-service", "alert-service", "terminal-service", "api-gateway"):
        assert f"/api/v1/status/{service}" in paths
    assert "/api/v1/namespaces/{namespace}/apps" in paths
    assert "/api/v1/auth/login" in paths

    stack.create_admin()
    headers = {"authorization": f"Bearer {stack.token()}"}
    assert (
        httpx.post(f"{stack.url}/api/v1/namespaces", json={"name": "team-a"}, headers=headers).status_code
        == 201
    )
    app = {"name": "web", "git_url": "https://git.example.com/web.git"}
    created = httpx.post(f"{stack.url}/api/v1/namespaces/team-a/apps", json=app, headers=headers)
    assert created.status_code == 201

    stack.stop()
    stack.start()
    headers = {"authorization": f"Bearer {stack.token()}"}
    again = httpx.get(f"{stack.url}/api/v1/namespaces/team-a/apps/web", headers=headers)
    assert again.status_code == 200
    assert again.json()["id"] == created.json()["id"]
    stack.stop()
