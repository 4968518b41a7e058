"""The table of Kepler's processes: edit `COMPONENTS` to add a service or drop a worker."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from kepler_devstack.supervisor import ProcessSpec

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Component:
    """One service: an ASGI app on `gateway_port + port_offset` and, optionally, its arq worker."""

    name: str
    package: str
    port_offset: int
    worker: bool = True

    @property
    def worker_name(self) -> str:
        return self.name.removesuffix("-service") + "-worker"


COMPONENTS: tuple[Component, ...] = (
    Component("gateway", "kepler_gateway", 0, worker=False),
    Component("app-service", "kepler_app_service", 1),
    Component("build-service", "kepler_build_service", 2),
    Component("alert-service", "kepler_alert_service", 3),
    Component("terminal-service", "kepler_terminal_service", 4),
)


def service_ports(gateway_port: int) -> dict[str, int]:
    return {c.name: gateway_port + c.port_offset for c in COMPONENTS}


def gateway_routes(gateway_port: int) -> dict[str, str]:
    """`KEPLER_GATEWAY_APP_SERVICE_URL=http://127.0.0.1:8001` and so on: where the gateway proxies to."""
    ports = service_ports(gateway_port)
    return {
        f"KEPLER_GATEWAY_{c.name.upper().replace('-', '_')}_URL": f"http://{HOST}:{ports[c.name]}"
        for c in COMPONENTS
        if c.port_offset
    }


def _service(c: Component, gateway_port: int) -> ProcessSpec:
    argv = (
        sys.executable, "-m", "uvicorn", f"{c.package}.app:create_app", "--factory",
        "--host", HOST, "--port", str(gateway_port + c.port_offset),
        "--no-access-log", "--log-level", "warning",
        "--no-proxy-headers",  # uvicorn would believe X-Forwarded-For from loopback: our kit decides
    )  # fmt: skip
    return ProcessSpec(c.name, argv, gateway_routes(gateway_port) if c.port_offset == 0 else {})


def _worker(c: Component) -> ProcessSpec:
    return ProcessSpec(
        c.worker_name, (sys.executable, "-m", "kepler_kit.worker", f"{c.package}.tasks.WorkerSettings")
    )


def worker_queues() -> list[str]:
    """The arq queue of each worker (`kepler_kit.contracts.service_queue`; not imported: it pulls in arq)."""
    return [f"kepler:{c.name}" for c in COMPONENTS if c.worker]


def readiness_env() -> dict[str, str]:
    """Every service's `/readyz`, the gateway's included, waits for every worker's heartbeat: "Kepler is
    ready" then means a deploy is picked up, not queued behind workers still importing."""
    return {"KEPLER_READINESS_WORKER_QUEUES": json.dumps(worker_queues())}


def kepler_services(gateway_port: int) -> list[ProcessSpec]:
    return [_service(c, gateway_port) for c in COMPONENTS]


def kepler_workers() -> list[ProcessSpec]:
    """One process hosting every service's worker (`kepler_devstack.workers`): `make run` stays small.
    `worker_processes()` is the one-per-service layout that compose and deploy/ use."""
    settings = tuple(f"{c.package}.tasks.WorkerSettings" for c in COMPONENTS if c.worker)
    return [ProcessSpec("workers", (sys.executable, "-m", "kepler_devstack.workers", *settings))]


def worker_processes() -> list[ProcessSpec]:
    return [_worker(c) for c in COMPONENTS if c.worker]


def kepler_processes(gateway_port: int) -> list[ProcessSpec]:
    """Every service, then every worker."""
    return kepler_services(gateway_port) + kepler_workers()


def sandbox_cluster(port: int, state_file: Path) -> ProcessSpec:
    """The simulated Kubernetes of `KEPLER_SANDBOX=1`: pods turn ready after two seconds; its objects are
    kept in `state_file` (under the data dir), so a restart does not empty the cluster Kepler deployed to."""
    argv = (
        sys.executable, "-m", "kepler_kubefake", "--host", HOST, "--port", str(port),
        "--state-file", str(state_file),
    )  # fmt: skip
    return ProcessSpec("kubefake", argv)


def sandbox_registration(port: int) -> ProcessSpec:
    url = f"http://{HOST}:{port}"
    return ProcessSpec("sandbox", (sys.executable, "-m", "kepler_app_service.sandbox", "--url", url))


SANDBOX_ENV = {"KEPLER_APP_SERVICE_DEFAULT_CLUSTER": "sandbox"}
