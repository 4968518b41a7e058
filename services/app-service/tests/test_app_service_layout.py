"""How app-service is wired: its OpenAPI parameters and its worker's settings."""

import re

import pytest

from kepler_app_service import tasks
from kepler_app_service.app import create_app
from kepler_app_service.settings import AppServiceSettings
from kepler_kit.worker import create_worker


def test_path_parameters_are_documented_in_path_order() -> None:
    """Path look-ups are dependencies (`NamespaceInPath`, `AppInPath`…), and FastAPI lists an endpoint's
    own parameters before its dependencies': the document must still list them as the path does, which
    generated clients follow for their arguments."""
    document = create_app(AppServiceSettings()).openapi()
    for path, operations in document["paths"].items():
        in_path = re.findall(r"{(\w+)}", path)
        for method, operation in operations.items():
            listed = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
            assert listed == in_path, f"{method.upper()} {path}"


def test_worker_settings_are_read_when_the_worker_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the jobs reads no environment: the settings class is built by a factory, from the
    environment of the moment it runs, and the worker commands' path still names it."""
    monkeypatch.setenv("KEPLER_QUEUE_NAME", "kepler:layout-test")
    assert getattr(tasks.create_worker_settings(), "queue_name") == "kepler:layout-test"  # noqa: B009
    worker = create_worker("kepler_app_service.tasks.WorkerSettings")  # as `python -m kepler_kit.worker`
    assert worker.queue_name.startswith("kepler:")
