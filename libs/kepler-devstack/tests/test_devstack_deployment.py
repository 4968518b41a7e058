"""docker-compose.yml and deploy/ must run the same processes as `make run`, and be well-formed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kepler_devstack.components import COMPONENTS, Component

WORKER = ["python", "-m", "kepler_kit.worker"]  # arq's worker, woken on enqueue (kepler_kit.worker)

ROOT = Path(__file__).resolve().parents[3]
KUBERNETES_VERSION = "1.33"
KEPLER_IMAGE = "kepler:local"

Doc = dict[str, Any]


def load_compose() -> Doc:
    compose: Doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose


def kepler_compose_services() -> dict[str, Doc]:
    return {name: svc for name, svc in load_compose()["services"].items() if svc.get("image") == KEPLER_IMAGE}


class TestCompose:
    def test_runs_every_service_and_worker_of_the_devstack_table(self) -> None:
        services = load_compose()["services"]
        for c in COMPONENTS:
            assert f"{c.package}.app:create_app" in services[c.name]["command"]
            if c.worker:
                assert services[c.worker_name]["command"] == [*WORKER, f"{c.package}.tasks.WorkerSettings"]
        expected = {c.name for c in COMPONENTS} | {c.worker_name for c in COMPONENTS if c.worker}
        assert set(services) == expected | {"postgres", "redis", "migrate"}

    def test_every_service_has_a_healthcheck_or_is_one_shot(self) -> None:
        services = load_compose()["services"]
        awaited = {dep for svc in services.values() for dep, cond in svc.get("depends_on", {}).items()
                   if cond["condition"] == "service_completed_successfully"}  # fmt: skip
        for name, svc in services.items():
            one_shot = svc.get("restart") == "no" and name in awaited
            assert "healthcheck" in svc or one_shot, name
            assert one_shot or svc["healthcheck"]["test"][0] == "CMD", name

    def test_services_wait_for_migrations_which_wait_for_postgres(self) -> None:
        services = kepler_compose_services()
        assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
        assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        for name, svc in services.items():
            if name != "migrate":
                assert svc["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name

    def test_production_settings_and_a_required_secret(self) -> None:
        for name, svc in kepler_compose_services().items():
            env = svc["environment"]
            assert env["KEPLER_ENV"] == "production", name
            assert env["KEPLER_SECRET_KEY"].startswith("${KEPLER_SECRET_KEY:?"), name
            assert env["KEPLER_DATABASE_URL"] == "postgresql+asyncpg://kepler:kepler@postgres:5432/kepler"
            assert env["KEPLER_REDIS_URL"] == "redis://redis:6379/0"

    def test_only_the_gateway_is_published_and_it_reaches_every_service(self) -> None:
        services = load_compose()["services"]
        assert [name for name, svc in services.items() if "ports" in svc] == ["gateway"]
        assert services["gateway"]["ports"] == ["8000:8000"]
        env = services["gateway"]["environment"]
        routes = {k: v for k, v in env.items() if k.startswith("KEPLER_GATEWAY_")}
        assert routes == {gateway_route(c): f"http://{c.name}:8000" for c in COMPONENTS if c.port_offset}


def gateway_route(c: Component) -> str:
    return f"KEPLER_GATEWAY_{c.name.upper().replace('-', '_')}_URL"


def manifest_files() -> list[Path]:
    return sorted(p for p in (ROOT / "deploy").glob("*.yaml") if p.name != "kustomization.yaml")


def manifests() -> list[Doc]:
    return [doc for path in manifest_files() for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(kind: str, name: str) -> Doc:
    matches = [d for d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}"
    return matches[0]


def container(deployment: Doc) -> Doc:
    containers: list[Doc] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


class TestKubernetesManifests:
    @pytest.mark.parametrize("doc", manifests(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
    def test_validates_against_the_kubernetes_schema(self, doc: Doc) -> None:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)

    def test_kustomization_lists_every_manifest(self) -> None:
        kustomization = yaml.safe_load((ROOT / "deploy" / "kustomization.yaml").read_text())
        assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]

    @pytest.mark.parametrize("c", COMPONENTS, ids=lambda c: c.name)
    def test_each_service_has_a_probed_deployment_behind_a_service(self, c: Component) -> None:
        deployment, service = find("Deployment", c.name), find("Service", c.name)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        main = container(deployment)
        assert f"{c.package}.app:create_app" in main["command"]
        assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"

    @pytest.mark.parametrize("c", [c for c in COMPONENTS if c.worker], ids=lambda c: c.name)
    def test_each_worker_runs_arq_with_its_health_check(self, c: Component) -> None:
        worker, settings = container(find("Deployment", c.worker_name)), f"{c.package}.tasks.WorkerSettings"
        assert worker["command"] == [*WORKER, settings]
        assert worker["livenessProbe"]["exec"]["command"] == ["arq", "--check", settings]

    def test_the_migration_job_upgrades_to_head(self) -> None:
        job = find("Job", "kepler-migrate")
        assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["alembic", "upgrade", "head"]

    def test_every_pod_gets_config_and_secrets_and_an_existing_service_account(self) -> None:
        accounts = {d["metadata"]["name"] for d in manifests() if d["kind"] == "ServiceAccount"}
        for doc in manifests():
            if doc["kind"] in ("Deployment", "Job"):
                pod = doc["spec"]["template"]["spec"]
                assert pod["serviceAccountName"] in accounts
                sources = [next(iter(s.values()))["name"] for s in pod["containers"][0]["envFrom"]]
                assert sources == ["kepler-config", "kepler-secrets"]

    def test_the_gateway_reaches_every_service_by_its_service_name(self) -> None:
        data = find("ConfigMap", "kepler-config")["data"]
        routes = {k: v for k, v in data.items() if k.startswith("KEPLER_GATEWAY_")}
        assert routes == {gateway_route(c): f"http://{c.name}" for c in COMPONENTS if c.port_offset}
