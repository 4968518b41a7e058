"""`built_on_first_use`: a service's `tasks.WorkerSettings` built when a worker first asks for it, so
importing the jobs reads no environment and the worker commands keep their path."""

import pytest

from kepler_kit.worker import built_on_first_use


class TestBuiltOnFirstUse:
    def test_built_once_on_first_access(self) -> None:
        calls: list[int] = []

        def factory() -> type:
            calls.append(1)
            return type("WorkerSettings", (), {})

        attribute = built_on_first_use("kepler_x.tasks", factory)
        assert calls == []
        first = attribute("WorkerSettings")
        assert attribute("WorkerSettings") is first
        assert calls == [1]

    def test_other_names_are_missing_attributes(self) -> None:
        attribute = built_on_first_use("kepler_x.tasks", lambda: type("WorkerSettings", (), {}))
        with pytest.raises(AttributeError, match="kepler_x.tasks.*Nope"):
            attribute("Nope")
