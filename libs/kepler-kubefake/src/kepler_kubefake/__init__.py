"""A contract fake of the Kubernetes API server: real HTTP, real state, strict validation, injectable
faults."""

from kepler_kubefake.behaviours import Behaviour, PodBehaviour
from kepler_kubefake.faults import Delay, DropWatch, Fault, Forbid, Reject, ServerError, Throttle, WatchGone
from kepler_kubefake.http import RecordedRequest
from kepler_kubefake.kinds import DEFAULT_KINDS, Obj, ResourceKind
from kepler_kubefake.server import KubeFake

__all__ = [
    "DEFAULT_KINDS",
    "Behaviour",
    "Delay",
    "DropWatch",
    "Fault",
    "Forbid",
    "KubeFake",
    "Obj",
    "PodBehaviour",
    "RecordedRequest",
    "Reject",
    "ResourceKind",
    "ServerError",
    "Throttle",
    "WatchGone",
]
