"""What a credential was already granted while nothing access-related changed: the hot path reuses it."""

import time
from typing import NamedTuple

from kepler_db import Role
from kepler_kit.identity import Principal
from kepler_kit.permissions import Action


class Access(NamedTuple):
    """What a permitted endpoint gets: who, where, and with which role."""

    principal: Principal
    namespace: str | None
    role: Role | None


class Grant(NamedTuple):
    until: float  # monotonic: as long as what it was decided from is trusted
    role: Role | None


Grants = dict[tuple[Action, str | None], Grant]
GRANTS_KEY = "kepler.grants"
PER_CREDENTIAL = 256  # client addresses or (action, namespace) pairs remembered per credential


def granted_before(grants: Grants, action: Action, namespace: str | None) -> Grant | None:
    granted = grants.get((action, namespace))
    return granted if granted is not None and granted.until > time.monotonic() else None
