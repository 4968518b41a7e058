"""Generated objects pass the real Kubernetes schemas (kubernetes-validate, strict) and say what we mean."""

from typing import Any

import kubernetes_validate
import pytest

from kepler_app_service.releases import manifests
from kepler_app_service.releases.spec import ReleaseSpec

K8S_VERSION = "1.37.0"
FULL: dict[str, Any] = {
    "image": "registry.example.com/team/web:1.4.2",
    "image_digest": "sha256:" + "a" * 64,
    "replicas": 3,
    "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
    "env": [{"name": "LOG_LEVEL", "value": "debug"}, {"name": "spring.profiles.active", "value": "prod"}],
    "command": ["/app/server"],
    "args": ["--port", "8080"],
    "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}],
    "probes": {
        "readiness": {"check": {"type": "http", "path": "/healthz", "port": 8080}, "period_seconds": 5},
        "liveness": {"check": {"type": "tcp", "port": 8080}},
        "startup": {"check": {"type": "exec", "command": ["cat", "/app/ready"]}, "failure_threshold": 30},
    },
    "restarted_at": "2026-11-27T12:00:00Z",
}


ADOPTED: dict[str, Any] = {
    "image": "nginx",
    "container": "server",
    "ports": [
        {"name": "http", "port": 8080, "service_port": 80},
        {"name": "dns", "port": 53, "protocol": "UDP"},
    ],
}


@pytest.mark.parametrize("spec", [FULL, {"image": "nginx"}, ADOPTED], ids=["full", "minimal", "adopted"])
def test_objects_are_valid_kubernetes(spec: dict[str, Any]) -> None:
    for obj in manifests.objects("web", "team-a", 4, ReleaseSpec.model_validate(spec)):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_deployment_carries_the_whole_release() -> None:
    deployment = manifests.deployment("web", "team-a", 4, ReleaseSpec.model_validate(FULL))
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/team/web:1.4.2@sha256:" + "a" * 64
    assert container["env"][1] == {"name": "spring.profiles.active", "value": "prod"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert pod["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] == "2026-11-27T12:00:00Z"
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "web",
        "app.kubernetes.io/instance": "web",
    }
    assert pod["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kepler"
    assert pod["metadata"]["labels"]["app.kubernetes.io/version"] == "release-4"


def test_no_ports_no_service() -> None:
    assert [o["kind"] for o in manifests.objects("w", "n", 1, ReleaseSpec(image="nginx"))] == ["Deployment"]


def test_an_adopted_container_and_service_port_keep_their_keys() -> None:
    """What an imported Deployment had: apply merges containers by name and Service ports by port and
    protocol, so these must be the adopted values for a deploy to update them rather than add beside them."""
    service, deployment = manifests.objects("web", "team-a", 2, ReleaseSpec.model_validate(ADOPTED))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "server"
    assert [(p["name"], p["containerPort"], p["protocol"]) for p in container["ports"]] == [
        ("http", 8080, "TCP"),
        ("dns", 53, "UDP"),
    ]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"},
    ]
    assert (
        manifests.deployment("web", "n", 1, ReleaseSpec(image="nginx"))["spec"]["template"]["spec"][
            "containers"
        ][0]["name"]
        == "web"
    )
