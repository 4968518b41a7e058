"""A deployment's states and the moves between them, as data: the one definition of "active".

Kept apart from `lifecycle.move` because the queries need it too (`repository` filters on ACTIVE) and
`move` writes through `events`, which reads through `repository`: one module would be an import cycle.

    pending -> applying -> progressing -> succeeded | failed | rolled_back
    applying -> failed | rolled_back: the cluster rejected the objects (invalid, forbidden, terminating)
    pending -> cancelled (by a person); any active state -> superseded (by a newer deployment)
    applying, progressing -> pending: the cluster was unavailable; the sweeper runs it again
    progressing -> progressing: a re-run (its worker was lost) follows the rollout again
    pending -> pending: approved (below)

Approval is not a state of its own: the API shows a deployment awaiting approval as `pending` with reason
`AwaitingApproval`, and that stays. It is a hold on `pending`: while held, a deployment may only be
approved (it stays pending, now free to run), superseded or cancelled; the runner never claims it.
"""

from kepler_db import DeploymentStatus as Status
from kepler_kit.lifecycle import Lifecycle

DEPLOYMENTS = Lifecycle(
    "deployment",
    Status.pending,
    {
        Status.pending: {Status.pending, Status.applying, Status.superseded, Status.cancelled},
        Status.applying: {
            Status.pending,
            Status.progressing,
            Status.failed,
            Status.rolled_back,
            Status.superseded,
        },
        Status.progressing: {
            Status.pending,
            Status.progressing,
            Status.succeeded,
            Status.failed,
            Status.rolled_back,
            Status.superseded,
        },
        Status.succeeded: (),
        Status.failed: (),
        Status.rolled_back: (),
        Status.superseded: (),
        Status.cancelled: (),
    },
)
ACTIVE = DEPLOYMENTS.active
TERMINAL = DEPLOYMENTS.terminal

AWAITING_APPROVAL = "AwaitingApproval"
WHILE_AWAITING_APPROVAL = frozenset({Status.pending, Status.superseded, Status.cancelled})
