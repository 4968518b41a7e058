"""When a crashing container runs, exits and is restarted: the kubelet's back-off, as a pure timeline.

Follows pkg/kubelet/kuberuntime/kuberuntime_manager.go (`doBackOff`) with the back-off of
staging/src/k8s.io/client-go/util/flowcontrol/backoff.go, initial 10 s and capped at 300 s
(pkg/kubelet/kubelet.go `MaxContainerBackOff`): the first exit is restarted at once (no back-off entry yet),
each later exit waits the current back-off, which doubles at every restart; a container that ran for more
than twice the cap since its last restart starts over at 10 s. Image pulls back off the same way
(pkg/kubelet/images/image_manager.go). All times are Kubernetes seconds from the first start.
"""

from dataclasses import dataclass

INITIAL_BACKOFF = 10.0
MAX_BACKOFF = 300.0
OBSERVED_RUN = 1.0  # the PLEG relist period (pkg/kubelet/pleg/generic.go): shorter runs are never seen
ERR_IMAGE_PULL_SHOWN = 1.0  # a failed pull shows as ErrImagePull until the next pod sync reports the back-off


@dataclass(frozen=True, slots=True)
class Moment:
    """The container as the kubelet reports it at one time."""

    restarts: int
    running: bool
    started: float  # start of the current run (running) or of the run that last exited
    finished: float | None  # end of the last run that exited (lastState.terminated)
    backoff: float  # the back-off now in force (the `back-off 20s …` message)
    next_change: float | None  # when this picture changes next (None: never)


def crash_timeline(run: float, now: float) -> Moment:
    """A container that exits `run` seconds after each start; `now` ≥ 0 since its first start."""
    visible = run >= OBSERVED_RUN
    start, restarts, backoff, last_restart = 0.0, 0, 0.0, 0.0
    finished: float | None = None
    previous_start = 0.0
    while True:
        end = start + (run if visible else 0.0)
        if now < end:
            return Moment(restarts, True, start, finished, backoff, end)
        if finished is not None and end - last_restart > 2 * MAX_BACKOFF:
            backoff = 0.0  # ran long enough: the back-off entry has expired
        wait = backoff
        backoff = INITIAL_BACKOFF if backoff == 0 else min(backoff * 2, MAX_BACKOFF)
        previous_start, finished = start, end
        start = end + wait
        if now < start:
            return Moment(restarts, False, previous_start, finished, wait, start)
        restarts, last_restart = restarts + 1, start


def pull_timeline(now: float) -> tuple[bool, float, float]:
    """An image that never pulls, attempted at 0 s, then after 10, 20, 40 … 300 s: (whether the last attempt
    just failed (ErrImagePull) rather than backing off (ImagePullBackOff), the back-off, next change)."""
    attempt, backoff = 0.0, INITIAL_BACKOFF
    while now >= attempt + backoff:
        attempt += backoff
        backoff = min(backoff * 2, MAX_BACKOFF)
    if now < attempt + ERR_IMAGE_PULL_SHOWN:
        return True, backoff, attempt + ERR_IMAGE_PULL_SHOWN
    return False, backoff, attempt + backoff
