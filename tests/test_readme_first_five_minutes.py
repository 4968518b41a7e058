"""The README's "Your first five minutes", pasted as a new user would: the shell block, run by bash against
`KEPLER_SANDBOX=1 make run`'s stack. A README command that stops working fails this test."""

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kepler_devstack.testing import RunningStack, running_stack

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def first_five_minutes() -> str:
    """The first `sh` block under the section's heading, verbatim."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Your first five minutes", 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the section has no sh block"
    return found.group(1)


@pytest.fixture
def sandbox_stack(tmp_path: Path) -> Iterator[RunningStack]:
    with running_stack(ROOT, tmp_path, sandbox=True) as stack:
        yield stack


def test_the_readme_commands_deploy_follow_and_roll_back(sandbox_stack: RunningStack) -> None:
    ready = httpx.get(f"{sandbox_stack.url}/readyz").json()
    clusters = next(check for check in ready["checks"] if check["name"] == "clusters")
    assert "SIMULATED" in clusters["detail"]  # what the README says /readyz shows in the sandbox

    bash = shutil.which("bash")
    assert bash is not None, "the README's commands need bash"
    result = subprocess.run(
        [bash, "-euo", "pipefail", "-c", first_five_minutes()],
        cwd=ROOT, env=sandbox_stack.env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:] + "\n--- stack ---\n" + sandbox_stack.tail()
    assert "Using PostgreSQL at socket" in result.stdout  # the admin went to the embedded database
    assert result.stdout.count('"status":"succeeded"') == 3  # two deploys and the rollback, followed live
    assert result.stdout.rstrip().splitlines()[-1] == "1"  # current release after the rollback
