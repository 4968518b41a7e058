"""Kubernetes objects for a release, built as plain dicts: never by templating text."""

from typing import Any

from kepler_app_service.releases.spec import Probe, ReleaseSpec

MANAGED_BY = "kepler"
RELEASE_ANNOTATION = "kepler.dev/release"
Obj = dict[str, Any]


def selector(app: str) -> dict[str, str]:
    """Stable for the app's life: a Deployment's selector is immutable."""
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app}


def label_selector(match: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(match.items()))


def labels(app: str, release: int) -> dict[str, str]:
    return {
        **selector(app),
        "app.kubernetes.io/version": f"release-{release}",
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def _probe(probe: Probe | None) -> Obj | None:
    if probe is None:
        return None
    check = probe.check
    handler: Obj
    if check.type == "http":
        handler = {"httpGet": {"path": check.path, "port": check.port}}
    elif check.type == "tcp":
        handler = {"tcpSocket": {"port": check.port}}
    else:
        handler = {"exec": {"command": list(check.command)}}
    return {
        **handler,
        "initialDelaySeconds": probe.initial_delay_seconds,
        "periodSeconds": probe.period_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "failureThreshold": probe.failure_threshold,
    }


def _resources(spec: ReleaseSpec) -> Obj:
    out: Obj = {}
    for kind in ("requests", "limits"):
        amounts = getattr(spec.resources, kind).model_dump(exclude_none=True)
        if amounts:
            out[kind] = amounts
    return out


def _container(app: str, spec: ReleaseSpec) -> Obj:
    container: Obj = {
        "name": spec.container or app,
        "image": spec.image_ref,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": p.name, "containerPort": p.port, "protocol": p.protocol} for p in spec.ports],
        "env": [{"name": e.name, "value": e.value} for e in spec.env],
        "resources": _resources(spec),
    }
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    for field, probe in (
        ("readinessProbe", spec.probes.readiness),
        ("livenessProbe", spec.probes.liveness),
        ("startupProbe", spec.probes.startup),
    ):
        rendered = _probe(probe)
        if rendered is not None:
            container[field] = rendered
    return container


def deployment(
    app: str, namespace: str, release: int, spec: ReleaseSpec, adopted: dict[str, str] | None = None
) -> Obj:
    """`adopted`: the selector of a Deployment Kepler took over; selectors cannot change, so it stays."""
    match = adopted or selector(app)
    annotations = {RELEASE_ANNOTATION: str(release)}
    template_annotations = dict(annotations)
    if spec.restarted_at:
        template_annotations["kubectl.kubernetes.io/restartedAt"] = spec.restarted_at
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": app,
            "namespace": namespace,
            "labels": labels(app, release),
            "annotations": annotations,
        },
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": match},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": spec.progress_deadline_seconds,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": {**match, **labels(app, release)},
                    "annotations": template_annotations,
                },
                "spec": {"containers": [_container(app, spec)], "enableServiceLinks": False},
            },
        },
    }


def service(
    app: str, namespace: str, release: int, spec: ReleaseSpec, adopted: dict[str, str] | None = None
) -> Obj | None:
    """A ClusterIP Service for the declared ports; none when the app declares none."""
    if not spec.ports:
        return None
    ports = [
        {"name": p.name, "port": p.exposed, "targetPort": p.name, "protocol": p.protocol} for p in spec.ports
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app, "namespace": namespace, "labels": labels(app, release)},
        "spec": {"type": "ClusterIP", "selector": adopted or selector(app), "ports": ports},
    }


def objects(
    app: str, namespace: str, release: int, spec: ReleaseSpec, adopted: dict[str, str] | None = None
) -> list[Obj]:
    """In apply order: the Service first, so endpoints exist when pods turn ready."""
    svc = service(app, namespace, release, spec, adopted)
    return [*([svc] if svc else []), deployment(app, namespace, release, spec, adopted)]
