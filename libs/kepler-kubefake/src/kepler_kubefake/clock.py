"""Time as the fake sees it: wall-clock timestamps for objects, and a scalable clock for Kubernetes durations.

`time_scale` is real seconds per Kubernetes second: with 0.01 a `progressDeadlineSeconds: 600` expires after 6
real seconds, so tests exercise deadlines without waiting for them.
"""

import time
from datetime import UTC, datetime


def rfc3339(epoch: float | None = None) -> str:
    """Second precision and a `Z`, as the API server formats `metav1.Time`."""
    moment = datetime.fromtimestamp(time.time() if epoch is None else epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(epoch: float | None = None) -> str:
    """Microsecond precision, as `metav1.MicroTime` (an Event's `eventTime`) is formatted."""
    moment = datetime.fromtimestamp(time.time() if epoch is None else epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Clock:
    def __init__(self, time_scale: float = 1.0) -> None:
        self.time_scale = time_scale

    def now(self) -> float:
        return time.monotonic()

    def real_seconds(self, kubernetes_seconds: float) -> float:
        return kubernetes_seconds * self.time_scale

    def timestamp(self) -> str:
        return rfc3339()

    def micro_timestamp(self) -> str:
        return rfc3339_micro()
