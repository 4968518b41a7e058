"""App lifecycle. Flushes, never commits: the caller's transaction decides."""

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.apps import repository
from kepler_app_service.apps.schemas import App, AppCreate, AppPage, AppUpdate
from kepler_app_service.audit import audit
from kepler_app_service.events import about_app, emit
from kepler_app_service.releases import service as releases
from kepler_app_service.unique import flush_unique
from kepler_db import models
from kepler_kit.errors import BadRequest, Conflict, NotFound
from kepler_kit.events import kinds
from kepler_kit.identity import Principal
from kepler_kit.pagination import PageRequest, page_of
from kepler_kube.base import Kube


def app_out(app: models.App, namespace: str) -> App:
    fields = {name: getattr(app, name) for name in App.model_fields if name != "namespace"}
    return App.model_validate({**fields, "namespace": namespace})


async def get_app(session: AsyncSession, namespace: models.Namespace, name: str) -> models.App:
    app = await repository.app_by_name(session, namespace.id, name)
    if app is None:
        raise NotFound(f"App '{name}' does not exist in namespace '{namespace.name}'.")
    return app


async def create_app(
    session: AsyncSession, who: Principal, namespace: models.Namespace, data: AppCreate
) -> models.App:
    if await repository.app_by_name(session, namespace.id, data.name):
        raise Conflict(f"App '{data.name}' already exists in namespace '{namespace.name}'.")
    app = models.App(**data.model_dump(mode="json"), namespace_id=namespace.id, created_by=who.user_id)
    session.add(app)
    await flush_unique(session, f"App '{data.name}'")
    await session.refresh(app)
    audit(session, who, "app.create", "app", data.name, namespace.name)
    emit(session, who, kinds.AppCreated(**about_app(namespace, app)))
    return app


async def update_app(
    session: AsyncSession, who: Principal, namespace: models.Namespace, app: models.App, data: AppUpdate
) -> models.App:
    changes = data.model_dump(mode="json", exclude_unset=True)
    for field, value in changes.items():
        if value is None and field not in ("language", "git_url"):
            raise BadRequest(f"'{field}' cannot be null.")
        setattr(app, field, value)
    await session.flush()
    await session.refresh(app)
    audit(session, who, "app.update", "app", app.name, namespace.name, changed=sorted(changes))
    emit(session, who, kinds.AppUpdated(**about_app(namespace, app), changed=sorted(changes)))
    return app


async def delete_app(
    session: AsyncSession,
    who: Principal,
    namespace: models.Namespace,
    app: models.App,
    confirm: str,
    cluster: Callable[[], Awaitable[Kube]],
) -> None:
    """The row goes only if the objects went too: an unreachable cluster fails the whole delete. The
    cluster is asked for only when the app was deployed there (`cluster`: its client, looked up then)."""
    deployed = await releases.was_deployed(session, app)
    if confirm != app.name:
        raise BadRequest("Deleting an app needs `confirm` set to the app's name.")
    await session.delete(app)
    await session.flush()
    audit(session, who, "app.delete", "app", app.name, namespace.name)
    emit(session, who, kinds.AppDeleted(**about_app(namespace, app)))
    if deployed:
        await releases.remove_objects(await cluster(), namespace.name, app.name)


async def list_apps(session: AsyncSession, namespace: models.Namespace, page: PageRequest) -> AppPage:
    rows = await repository.list_apps(session, namespace.id, page.limit, page.key(str))
    return page_of(
        AppPage, rows, page.limit, lambda app: [app.name], lambda app: app_out(app, namespace.name)
    )
