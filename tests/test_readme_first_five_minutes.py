"""The README's "Your first five minutes", pasted as a new user would: the shell block, run by bash against
`KEPLER_SANDBOX=1 make run`'s stack. A README command that stops working fails this test."""

import os
import re
import shutil
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
pytestmark = pytest.mark.slow


def first_five_minutes() -> str:
    """The first `sh` block under the section's heading, verbatim."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Your first five minutes", 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the section has no sh block"
    return found.group(1)


def free_port_block(size: int = 11) -> int:
    """The gateway, four services and (at +10) the sandbox cluster."""
    for first in range(31000, 40000, size):
        if all(port_is_free(first + i) for i in range(size)):
            return first
    raise RuntimeError("no free ports")


def user_env(data_dir: Path, port: int) -> dict[str, str]:
    """A shell at the checkout: no database URLs (the stack is embedded), `uv` on PATH as `make` needs."""
    env = {k: v for k, v in os.environ.items() if k not in ("KEPLER_DATABASE_URL", "KEPLER_REDIS_URL")}
    uv = os.environ.get("UV") or shutil.which("uv")
    path = f"{Path(uv).parent}{os.pathsep}{env.get('PATH', '')}" if uv else env.get("PATH", "")
    return env | {"KEPLER_DATA_DIR": str(data_dir), "KEPLER_GATEWAY_PORT": str(port), "PATH": path}


@pytest.fixture
def sandbox_stack(tmp_path: Path) -> Iterator[tuple[dict[str, str], str, Path]]:
    port, log = free_port_block(), tmp_path / "stack.log"
    env = user_env(tmp_path / "data", port)
    with log.open("ab") as sink:
        stack = subprocess.Popen(
            [sys.executable, "-m", "kepler_devstack", "run"],
            cwd=ROOT, env=env | {"KEPLER_SANDBOX": "1"}, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not _ready(f"http://127.0.0.1:{port}"):
            assert stack.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        yield env, f"http://127.0.0.1:{port}", log
    finally:
        stack.send_signal(signal.SIGTERM)
        try:
            stack.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stack.kill()
            stack.wait()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_readme_commands_deploy_follow_and_roll_back(
    sandbox_stack: tuple[dict[str, str], str, Path],
) -> None:
    env, url, log = sandbox_stack
    ready = httpx.get(f"{url}/readyz").json()
    clusters = next(check for check in ready["checks"] if check["name"] == "clusters")
    assert "SIMULATED" in clusters["detail"]  # what the README says /readyz shows in the sandbox

    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", first_five_minutes()],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:] + "\n--- stack ---\n" + log.read_text()[-3000:]
    assert "Using PostgreSQL at socket" in result.stdout  # the admin went to the embedded database
    assert result.stdout.count('"status":"succeeded"') == 3  # two deploys and the rollback, followed live
    assert result.stdout.rstrip().splitlines()[-1] == "1"  # current release after the rollback
