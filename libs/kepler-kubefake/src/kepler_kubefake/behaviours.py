"""What a pod's containers do once started: run, crash, fail to pull, or ignore SIGTERM.

Chosen by the image name (`…crashloop…`, `…crashafter5…` or `…crash-after-5s…`, `…neverready…`,
`…imagepullbackoff…`, `…ignoresigterm…`) or by
`KubeFake.set_pod_behaviour(namespace, deployment, "crashafter:5")`,
so every failure a real cluster shows can be driven end to end without a special client.
"""

import re
from dataclasses import dataclass
from enum import StrEnum


class PodBehaviour(StrEnum):
    READY = "ready"
    CRASHLOOP = "crashloop"  # exits at once (a startup failure); never seen running
    CRASH_AFTER = "crashafter"  # runs `seconds` Kubernetes seconds, then exits: `crashafter:5`
    NEVER_READY = "neverready"  # runs, but its readiness probe always fails
    IMAGE_PULL_BACKOFF = "imagepullbackoff"  # the image does not exist: ErrImagePull ↔ ImagePullBackOff
    IGNORE_SIGTERM = "ignoresigterm"  # runs and is Ready, but takes the whole grace period to stop


@dataclass(frozen=True, slots=True)
class Behaviour:
    """A behaviour with its parameters: how long a crashing container runs and the code it exits with."""

    kind: PodBehaviour = PodBehaviour.READY
    seconds: float = 0.0
    exit_code: int = 1

    @classmethod
    def crash_after(cls, seconds: float, exit_code: int = 1) -> "Behaviour":
        return cls(PodBehaviour.CRASH_AFTER, float(seconds), exit_code)

    @classmethod
    def parse(cls, value: "Behaviour | PodBehaviour | str") -> "Behaviour":
        """`"crashafter:5"`, `"crashafter:5:exit=2"`, `"crashloop"`, a `PodBehaviour` or a `Behaviour`."""
        if isinstance(value, Behaviour):
            return value
        name, _, rest = str(value).partition(":")
        kind = PodBehaviour(name.replace("-", "").lower())
        if kind is not PodBehaviour.CRASH_AFTER:
            return cls(kind)
        seconds, _, code = rest.partition(":exit=")
        return cls.crash_after(float(seconds or 0), int(code or 1))


_CRASH_AFTER = re.compile(r"crash-?after-?(\d+(?:\.\d+)?)s?")
_BY_NAME = (
    PodBehaviour.CRASHLOOP,
    PodBehaviour.NEVER_READY,
    PodBehaviour.IMAGE_PULL_BACKOFF,
    PodBehaviour.IGNORE_SIGTERM,
)


def behaviour_from_images(images: list[str]) -> Behaviour:
    """The image-name convention: the first image naming a behaviour decides it for the pod."""
    for image in (i.lower() for i in images):
        if match := _CRASH_AFTER.search(image):
            return Behaviour.crash_after(float(match.group(1)))
        for kind in _BY_NAME:
            if kind.value in image:
                return Behaviour(kind)
    return Behaviour()
