"""Importing Deployments that already run in a namespace, as Kepler Cloud's sync did: each becomes an app
whose release 1 is read back from its pod template, keeping its own selector (selectors are immutable) and
every key server-side apply merges by (container name, ports, env names), so deploys update what it had."""

import re
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.apps import repository
from kepler_app_service.apps.schemas import importable_git_url
from kepler_app_service.audit import audit
from kepler_app_service.releases import service
from kepler_app_service.releases.manifests import MANAGED_BY
from kepler_app_service.releases.schemas import ImportResult, Skipped
from kepler_app_service.releases.spec import ReleaseSpec
from kepler_db import models
from kepler_kit.identity import Principal
from kepler_kit.names import IANA_SVC_NAME
from kepler_kube.base import Kube

_APP_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
Obj = dict[str, Any]


def _probe(probe: Obj | None) -> Obj | None:
    if not probe:
        return None
    timing = {
        "initial_delay_seconds": probe.get("initialDelaySeconds", 0),
        "period_seconds": probe.get("periodSeconds", 10),
        "timeout_seconds": probe.get("timeoutSeconds", 1),
        "failure_threshold": probe.get("failureThreshold", 3),
    }
    if "httpGet" in probe:
        check = {"type": "http", "path": probe["httpGet"].get("path", "/"), "port": probe["httpGet"]["port"]}
    elif "tcpSocket" in probe:
        check = {"type": "tcp", "port": probe["tcpSocket"]["port"]}
    elif "exec" in probe:
        check = {"type": "exec", "command": probe["exec"]["command"]}
    else:
        return None
    return {"check": check, **timing}


def _service_port_for(port: Obj, svc: Obj | None) -> Obj | None:
    """The adopted Service's port that sends traffic to this container port (by name or number), if any."""
    protocol = port.get("protocol", "TCP")
    for candidate in ((svc or {}).get("spec") or {}).get("ports") or []:
        target = candidate.get("targetPort", candidate.get("port"))
        if candidate.get("protocol", "TCP") == protocol and target in (
            port.get("name"),
            port["containerPort"],
        ):
            return dict(candidate)
    return None


def _port_name(port: Obj, in_front: Obj | None) -> str:
    """An unnamed container port (valid: only Services need names) gets the name of the Service port in front
    of it when that is a valid IANA_SVC_NAME, else `port-<number>[-<protocol>]`. Naming it is safe: apply
    merges container ports by containerPort and protocol, so the first deploy names the port it had."""
    if port.get("name"):
        return str(port["name"])
    service_name = (in_front or {}).get("name") or ""
    if len(service_name) <= 15 and re.match(IANA_SVC_NAME, service_name):
        return str(service_name)
    protocol = port.get("protocol", "TCP")
    return f"port-{port['containerPort']}" + ("" if protocol == "TCP" else f"-{protocol.lower()}")


def _port(port: Obj, svc: Obj | None) -> Obj:
    """A container port with its apply key (containerPort, protocol), so a deploy updates it, and the port of
    the Service in front of it, so a deploy updates that Service port (keyed by port and protocol) rather than
    adding one beside it. A Service port that targets no container port is left alone."""
    in_front = _service_port_for(port, svc)
    out = {
        "name": _port_name(port, in_front),
        "port": port["containerPort"],
        "protocol": port.get("protocol", "TCP"),
    }
    if in_front and in_front["port"] != port["containerPort"]:
        out["service_port"] = in_front["port"]
    return out


def spec_of(deployment: Obj, svc: Obj | None = None) -> ReleaseSpec:
    """Raises ValidationError when the Deployment uses what a release cannot express (named probe ports…).

    `svc`: the Service of the same name, which Kepler's deploys will apply to. The container keeps its
    name, and its ports and env their keys: server-side apply merges those lists by key, so a new key would
    add an item beside the adopted one (a second container, a duplicate port) instead of updating it."""
    spec = deployment.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    containers = pod.get("containers") or []
    if len(containers) != 1:
        raise ValueError("only single-container Deployments can be adopted")
    c = containers[0]
    probes = {k: _probe(c.get(f"{k}Probe")) for k in ("readiness", "liveness", "startup")}
    return ReleaseSpec.model_validate(
        {
            "image": c["image"],
            "container": c["name"],
            "replicas": spec.get("replicas", 1),
            "resources": c.get("resources") or {},
            "env": [
                {"name": e["name"], "value": e.get("value", "")}
                for e in c.get("env") or []
                if "valueFrom" not in e
            ],
            "command": c.get("command") or [],
            "args": c.get("args") or [],
            "ports": [_port(p, svc) for p in c.get("ports") or []],
            "probes": {k: v for k, v in probes.items() if v},
            "progress_deadline_seconds": spec.get("progressDeadlineSeconds", 600),
        }
    )


async def import_deployments(
    session: AsyncSession, who: Principal, namespace: models.Namespace, kube: Kube, only: set[str] | None
) -> ImportResult:
    """Each Deployment (of `only`, when given) becomes an app, or is listed as skipped with the reason."""
    result = ImportResult(imported=[], skipped=[])
    for deployment in (await kube.list("Deployment", namespace.name))["items"]:
        metadata = deployment.get("metadata") or {}
        name = metadata.get("name", "")
        if only is not None and name not in only:
            continue
        reason = await _why_not(session, namespace, deployment)
        if reason is None:
            svc = await kube.get("Service", namespace.name, name)
            reason = await _import_one(session, who, namespace, deployment, svc)
        if reason is None:
            result.imported.append(name)
        else:
            result.skipped.append(Skipped(name=name, reason=reason))
    return result


async def _why_not(session: AsyncSession, namespace: models.Namespace, deployment: Obj) -> str | None:
    metadata = deployment.get("metadata") or {}
    name = metadata.get("name", "")
    if (metadata.get("labels") or {}).get("app.kubernetes.io/managed-by") == MANAGED_BY:
        return "already managed by Kepler"
    if len(name) > 53 or not _APP_NAME.match(name):
        return "its name is not a valid app name (DNS-1035, 53 characters at most)"
    if await repository.app_by_name(session, namespace.id, name):
        return "an app with this name exists"
    if ((deployment.get("spec") or {}).get("selector") or {}).get("matchExpressions"):
        return "selectors with matchExpressions are not supported"
    return None


async def _import_one(
    session: AsyncSession, who: Principal, namespace: models.Namespace, deployment: Obj, svc: Obj | None
) -> str | None:
    try:
        spec = spec_of(deployment, svc)
    except (ValidationError, ValueError, KeyError) as exc:
        return f"its pod template cannot be expressed as a release: {str(exc).splitlines()[0]}"
    name = deployment["metadata"]["name"]
    annotations = deployment["metadata"].get("annotations") or {}
    app = models.App(
        namespace_id=namespace.id,
        name=name,
        git_url=importable_git_url(annotations.get("kepler.dev/git-url")),
        ports=[p.model_dump() for p in spec.ports],
        selector=deployment["spec"]["selector"]["matchLabels"],
        created_by=who.user_id,
        current_release=1,
    )
    session.add(app)
    await session.flush()
    await service.new_release(session, app, spec, "import", who)
    audit(session, who, "app.import", "app", name, namespace.name)
    return None
