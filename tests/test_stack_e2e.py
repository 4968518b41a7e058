"""`make run` as a user meets it: the embedded stack comes up, the gateway serves every service's API,
and what was created survives a stop and a start."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kepler_devstack.testing import RunningStack, running_stack

ROOT = Path(__file__).resolve().parent.parent
ADMIN, PASSWORD = "admin@example.com", "a long enough passphrase"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[RunningStack]:
    with running_stack(ROOT, tmp_path, start=False) as stack:
        yield stack


def test_make_run_serves_everything_and_keeps_data_across_restarts(stack: RunningStack) -> None:
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

    stack.create_admin(ADMIN, PASSWORD)
    headers = {"authorization": f"Bearer {stack.login(ADMIN, PASSWORD)}"}
    assert (
        httpx.post(f"{stack.url}/api/v1/namespaces", json={"name": "team-a"}, headers=headers).status_code
        == 201
    )
    app = {"name": "web", "git_url": "https://git.example.com/web.git"}
    created = httpx.post(f"{stack.url}/api/v1/namespaces/team-a/apps", json=app, headers=headers)
    assert created.status_code == 201

    assert stack.stop() == 0, stack.tail()
    stack.start()
    headers = {"authorization": f"Bearer {stack.login(ADMIN, PASSWORD)}"}
    again = httpx.get(f"{stack.url}/api/v1/namespaces/team-a/apps/web", headers=headers)
    assert again.status_code == 200
    assert again.json()["id"] == created.json()["id"]
    assert stack.stop() == 0, stack.tail()
