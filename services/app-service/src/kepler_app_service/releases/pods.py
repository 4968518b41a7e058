"""What runs on the cluster for an app, asked of the cluster itself: its pods and the Kubernetes events
about it (the live status in Postgres is the cheap view; these are the detailed one)."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.audit import audit
from kepler_app_service.releases import manifests, service
from kepler_app_service.releases.rollout import PodState
from kepler_app_service.releases.schemas import KubeEvent, KubeEventPage, Pod, PodPage
from kepler_db import models
from kepler_kit.errors import NotFound
from kepler_kit.identity import Principal
from kepler_kit.pagination import PageRequest
from kepler_kube.base import Kube


async def list_pods(kube: Kube, namespace: str, app: models.App, page: PageRequest) -> PodPage:
    pods = (await kube.list("Pod", namespace, _selector(app)))["items"]
    return service.pods_page([_pod(pod, app.current_release) for pod in pods], page)


async def delete_pod(
    session: AsyncSession, who: Principal, kube: Kube, namespace: str, app: models.App, pod: str
) -> None:
    """Only a pod of this app: the pod name comes from the caller, the namespace may hold others'."""
    found = await kube.get("Pod", namespace, pod)
    labels = ((found or {}).get("metadata") or {}).get("labels") or {}
    wanted = app.selector or manifests.selector(app.name)
    if found is None or any(labels.get(k) != v for k, v in wanted.items()):
        raise NotFound(f"App '{app.name}' has no pod '{pod}'.")
    await kube.delete("Pod", namespace, pod)
    audit(session, who, "pod.delete", "pod", pod, namespace, app=app.name)


async def kube_events(kube: Kube, namespace: str, app: models.App, page: PageRequest) -> KubeEventPage:
    replica_sets = (await kube.list("ReplicaSet", namespace, _selector(app)))["items"]
    owned = {(rs.get("metadata") or {}).get("name", "") for rs in replica_sets}
    items = (await kube.list("Event", namespace))["items"]
    about = [e for e in items if _about(app.name, owned, e.get("involvedObject") or {})]
    return service.kube_events_page([_event(e) for e in about], page)


def _selector(app: models.App) -> str:
    return manifests.label_selector(app.selector or manifests.selector(app.name))


def _pod(pod: manifests.Obj, current: int | None) -> Pod:
    state = PodState.of(pod)
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return Pod(
        name=state.name,
        phase=state.phase,
        ready=state.ready,
        restarts=state.restarts,
        node=state.node,
        release=int(state.release) if state.release and state.release.isdigit() else None,
        current=state.release is not None and state.release == str(current),
        containers=[
            {"name": c.get("name"), "image": c.get("image"), "ready": c.get("ready"), "state": c.get("state")}
            for c in statuses
        ],
        created_at=(pod.get("metadata") or {}).get("creationTimestamp"),
    )


def _about(app: str, replica_sets: set[str], involved: manifests.Obj) -> bool:
    """The app's Deployment, its ReplicaSets (those its selector finds: the Deployment keeps their history)
    and their pods (`<replica set>-<suffix>`, also once deleted); not another app's, whose name merely
    starts the same (`app-x`, `app-x-7d9f…`)."""
    kind, name = involved.get("kind"), str(involved.get("name", ""))
    if kind == "Deployment":
        return name == app
    if kind == "ReplicaSet":
        return name in replica_sets
    return kind == "Pod" and name.rpartition("-")[0] in replica_sets


def _event(event: manifests.Obj) -> KubeEvent:
    involved = event.get("involvedObject") or {}
    return KubeEvent(
        name=(event.get("metadata") or {}).get("name", ""),
        type=event.get("type", "Normal"),
        reason=event.get("reason", ""),
        message=event.get("message", ""),
        object=f"{involved.get('kind', '')}/{involved.get('name', '')}",
        count=int(event.get("count") or (event.get("series") or {}).get("count") or 1),
        last_seen=_last_seen(event),
    )


def _last_seen(event: manifests.Obj) -> datetime | None:
    """The newest of the times an event carries: core/v1 recorders set lastTimestamp, events.k8s.io
    recorders set eventTime and, for a repeated event, series.lastObservedTime."""
    stamps = (
        (event.get("series") or {}).get("lastObservedTime"),
        event.get("lastTimestamp"),
        event.get("eventTime"),
    )
    seen = [parsed for stamp in stamps if (parsed := _timestamp(stamp)) is not None]
    return max(seen, default=None)


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
