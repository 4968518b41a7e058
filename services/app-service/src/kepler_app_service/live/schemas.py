"""An app's live status as the API shows it: what the watch last folded into `apps.live`."""

from pydantic import BaseModel

from kepler_db import models


class AppStatus(BaseModel):
    app: str
    current_release: int | None
    rollout: str | None
    desired: int | None
    ready: int | None
    updated: int | None
    available: int | None
    updated_at: str | None


def app_status(app: models.App) -> AppStatus:
    live = app.live or {}
    return AppStatus(
        app=app.name,
        current_release=app.current_release,
        rollout=live.get("rollout"),
        desired=live.get("desired"),
        ready=live.get("ready"),
        updated=live.get("updated"),
        available=live.get("available"),
        updated_at=live.get("at"),
    )
