"""port names follow IANA_SVC_NAME: stored ones a real apiserver refuses (`8080`, `a--b`) are renamed

The API used to accept any DNS label of 15 as a port name; it now takes IANA_SVC_NAME (apimachinery's
IsValidPortName), and reading back a stored app or release validates it again. A release with such a name
never ran (the apiserver refused its Deployment), so renaming it changes nothing on a cluster: each becomes
`port-<number>`, with `-<protocol>` when not TCP, the name import gives an unnamed port. Deterministic, so an
app's row and all its releases agree. The old rule accepts the new names: downgrade has nothing to undo.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 17:00:00.000000
"""

import json
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IANA_SVC_NAME = re.compile(r"^([0-9]+-)*[0-9]*[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def _renamed(ports: Any) -> list[Any] | None:
    """The list with every invalid name replaced; None when nothing needed it."""
    if not isinstance(ports, list):
        return None
    changed, out = False, []
    for port in ports:
        name = port.get("name", "") if isinstance(port, dict) else ""
        if isinstance(port, dict) and not (len(name) <= 15 and _IANA_SVC_NAME.match(name)):
            protocol = port.get("protocol", "TCP")
            suffix = "" if protocol == "TCP" else f"-{str(protocol).lower()}"
            port, changed = {**port, "name": f"port-{port.get('port')}{suffix}"}, True
        out.append(port)
    return out if changed else None


def upgrade() -> None:
    connection = op.get_bind()
    for app_id, ports in connection.execute(sa.text("SELECT id, ports FROM apps")).all():
        if (fixed := _renamed(ports)) is not None:
            connection.execute(
                sa.text("UPDATE apps SET ports = CAST(:ports AS jsonb) WHERE id = :id"),
                {"ports": json.dumps(fixed), "id": app_id},
            )
    for release_id, spec in connection.execute(sa.text("SELECT id, spec FROM releases")).all():
        if isinstance(spec, dict) and (fixed := _renamed(spec.get("ports"))) is not None:
            connection.execute(
                sa.text("UPDATE releases SET spec = CAST(:spec AS jsonb) WHERE id = :id"),
                {"spec": json.dumps({**spec, "ports": fixed}), "id": release_id},
            )


def downgrade() -> None:
    pass
