"""Every query of the stats domain: one pass over a window of the event log's deployment outcomes.

Only outcome events are read (`deployment.succeeded`, `.failed`, `.rolled_back`): they carry the times
the keys need (`requested_at`, `release_created_at`, `committed_at`, `automatic`). A deployment counts once
however many outcome events it has (the first one in log order), so a publisher that repeats itself does
not skew the keys. Literal SQL, one query per scope, built once at import.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_kit.events.kinds import (
    DeploymentFailed,
    DeploymentOutcome,
    DeploymentRolledBack,
    DeploymentSucceeded,
)

SUCCEEDED = DeploymentSucceeded.kind
OUTCOMES = (SUCCEEDED, DeploymentFailed.kind, DeploymentRolledBack.kind)
VERSION = DeploymentOutcome.version  # a newer publisher's outcomes may mean something else: not read


# The total of the scope (a namespace, an app, the whole platform) first, then each app of it with outcomes
# in the window. `measured`: one row per deployment with an outcome in [since, until), with its
# lead time (a person's successful deployment of a new change, not a rollback to an older release:
# deployed − commit time, else − release creation; a commit clock ahead of ours counts as 0) and, for a
# person's failed deployment, the time until the app's next success before `until` (any success, an
# automatic rollback's included: that is what restored the app).
def _tallies(scope: str) -> str:
    return f"""
WITH outcomes AS (
    SELECT DISTINCT ON (e.data->>'deployment_id')
           e.namespace_id, e.namespace, e.app_id, e.app, e.kind, e.occurred_at,
           coalesce((e.data->>'automatic')::boolean, false) AS automatic,
           coalesce((e.data->>'rollback')::boolean, false) AS rollback,
           (e.data->>'committed_at')::timestamptz AS committed_at,
           (e.data->>'release_created_at')::timestamptz AS release_created_at
    FROM platform_events e
    WHERE {scope} AND e.app_id IS NOT NULL
      AND e.kind = ANY(CAST(:outcomes AS text[]))
      AND e.version <= :version
      AND e.occurred_at >= :since AND e.occurred_at < :until
    ORDER BY e.data->>'deployment_id', e.id
), measured AS (
    SELECT o.*,
           o.kind <> :succeeded AND NOT o.automatic AS failure,
           CASE WHEN o.kind = :succeeded AND NOT o.automatic AND NOT o.rollback
               THEN greatest(0, extract(epoch FROM
                   o.occurred_at - coalesce(o.committed_at, o.release_created_at))::float8)
           END AS lead,
           extract(epoch FROM r.restored_at - o.occurred_at)::float8 AS restore
    FROM outcomes o
    LEFT JOIN LATERAL (
        SELECT min(s.occurred_at) AS restored_at
        FROM platform_events s
        WHERE o.kind <> :succeeded AND NOT o.automatic
          AND s.app_id = o.app_id AND s.kind = :succeeded AND s.version <= :version
          AND s.occurred_at > o.occurred_at AND s.occurred_at < :until
    ) r ON true
)
SELECT namespace_id, max(namespace) AS namespace, app_id, max(app) AS app,
       NOT EXISTS (SELECT 1 FROM apps a WHERE a.id = m.app_id) AS deleted,
       count(*) FILTER (WHERE kind = :succeeded AND NOT automatic) AS deployments,
       count(*) FILTER (WHERE NOT automatic) AS outcomes,
       count(*) FILTER (WHERE failure) AS failures,
       count(lead) FILTER (WHERE committed_at IS NOT NULL) AS from_commit,
       count(lead) FILTER (WHERE committed_at IS NULL) AS from_release,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY lead) AS lead_median,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY lead) AS lead_p90,
       avg(lead) AS lead_mean,
       count(restore) AS restored,
       count(*) FILTER (WHERE failure AND restore IS NULL) AS open,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY restore) AS restore_median,
       avg(restore) AS restore_mean
FROM measured m
GROUP BY GROUPING SETS ((), (namespace_id, app_id))
ORDER BY GROUPING(app_id) DESC, max(namespace), max(app), app_id
"""  # noqa: S608  (`scope` is one of the constants below)


# One query per scope, each filtering on its own column (an index of the log), not on `col = :x OR :x IS NULL`
# which a cached generic plan could only answer by scanning.
_BY_NAMESPACE = text(_tallies("e.namespace_id = :scope"))
_BY_APP = text(_tallies("e.app_id = :scope"))
_EVERYWHERE = text(_tallies("true"))


@dataclass(frozen=True)
class Tally:
    """What the log says of a scope (an app, a namespace) over a window; the keys derive from it."""

    deployments: int  # a person's successful deployments
    outcomes: int  # a person's deployments that succeeded, failed or were rolled back
    failures: int  # … that failed or were rolled back
    from_commit: int  # lead times measured from the commit
    from_release: int  # … from the release's creation (not built by Kepler)
    lead_median: float | None
    lead_p90: float | None
    lead_mean: float | None
    restored: int
    open: int
    restore_median: float | None
    restore_mean: float | None


@dataclass(frozen=True)
class AppTally:
    """One row of the tallies: an app's (its names as its events give them), or the scope's (no names)."""

    namespace: str | None
    app: str | None
    deleted: bool  # the app has since been deleted
    tally: Tally


async def _tallies_of(
    session: AsyncSession, query: TextClause, since: datetime, until: datetime, scope: uuid.UUID | None
) -> list[AppTally]:
    """The scope's total first, then each app of it with outcomes in the window."""
    params = {"scope": scope, "since": since, "until": until, "outcomes": list(OUTCOMES)}
    rows = await session.execute(query, {**params, "succeeded": SUCCEEDED, "version": VERSION})
    return [AppTally(r.namespace, r.app, r.deleted, Tally(*r[5:])) for r in rows]


async def namespace_tallies(
    session: AsyncSession, namespace_id: uuid.UUID, since: datetime, until: datetime
) -> list[AppTally]:
    return await _tallies_of(session, _BY_NAMESPACE, since, until, namespace_id)


async def app_tally(session: AsyncSession, app_id: uuid.UUID, since: datetime, until: datetime) -> Tally:
    total, *_ = await _tallies_of(session, _BY_APP, since, until, app_id)
    return total.tally


async def platform_tallies(session: AsyncSession, since: datetime, until: datetime) -> list[AppTally]:
    """Every app with outcomes in the window, after the platform's total."""
    return await _tallies_of(session, _EVERYWHERE, since, until, None)
