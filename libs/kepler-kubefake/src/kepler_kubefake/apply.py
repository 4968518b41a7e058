"""Server-side apply: merge a manager's configuration into the live object, with per-field ownership.

A simplified structured-merge-diff: fields are compared as leaf paths (see `fields.py`). Applying a field
another manager owns with a *different* value is a conflict (409) unless forced, which transfers ownership;
the same value shares ownership. Fields the manager applied before and no longer applies are removed unless
someone else owns them.
"""

from dataclasses import dataclass

from kepler_kubefake.errors import apply_conflict
from kepler_kubefake.fields import (
    IDENTITY_METADATA,
    ITEM,
    FlatObject,
    Path,
    dotted,
    flatten,
    under,
    unflatten,
)
from kepler_kubefake.kinds import Obj, ResourceKind
from kepler_kubefake.managed import Entry, read_entries

_MISSING = object()


@dataclass(frozen=True, slots=True)
class ApplyRequest:
    kind: ResourceKind
    manager: str
    api_version: str
    force: bool
    now: str


def _conflicts(others: list[Entry], live: FlatObject, config: FlatObject) -> list[tuple[Entry, Path]]:
    found = []
    for e in others:
        for path in sorted(e.paths & config.keys()):
            if path[-1] != ITEM and live.get(path, _MISSING) != config[path]:
                found.append((e, path))
    return found


def _check_conflicts(
    req: ApplyRequest, name: str, others: list[Entry], live: FlatObject, config: FlatObject
) -> None:
    conflicts = _conflicts(others, live, config)
    if conflicts and not req.force:
        raise apply_conflict(req.kind, name, [(e.manager, e.api_version, dotted(p)) for e, p in conflicts])
    for e, path in conflicts:
        e.paths.discard(path)


def _removed(previous: set[Path], config: FlatObject, others: list[Entry]) -> tuple[set[Path], set[Path]]:
    """Fields this manager stopped applying that nobody else owns; whole items when it owned the item."""
    owned_by_others = set().union(*(e.paths for e in others)) if others else set()
    removed = previous - config.keys() - owned_by_others
    items = {p[:-1] for p in removed if p[-1] == ITEM}
    items = {i for i in items if not any(q[: len(i)] == i for q in owned_by_others)}
    return removed, items


def _assemble(live: Obj, merged: FlatObject) -> Obj:
    body = unflatten(merged)
    identity = {k: v for k, v in live["metadata"].items() if k in IDENTITY_METADATA}
    out: Obj = {"apiVersion": live["apiVersion"], "kind": live["kind"]}
    out["metadata"] = identity | body.pop("metadata", {})
    out |= body
    if "status" in live:
        out["status"] = live["status"]
    return out


def apply_to(req: ApplyRequest, live: Obj, config: Obj) -> tuple[Obj, list[Entry]]:
    """The merged object (before defaulting) and the new ownership; raises 409 on unforced conflicts."""
    entries = read_entries(live)
    mine = next((e for e in entries if e.key == (req.manager, "Apply", "")), None)
    others = [e for e in entries if e is not mine]
    live_flat, config_flat = flatten(live), flatten(config)
    _check_conflicts(req, live["metadata"]["name"], others, live_flat, config_flat)
    removed, removed_items = _removed(mine.paths if mine else set(), config_flat, others)
    merged = {p: v for p, v in live_flat.items() if p not in removed and not under(p, removed_items)}
    merged.update(config_flat)
    if mine is None:
        mine = Entry(req.manager, "Apply", req.api_version, req.now)
        entries.append(mine)
    mine.paths, mine.api_version, mine.time = set(config_flat), req.api_version, req.now
    return _assemble(live, merged), entries


def apply_create(req: ApplyRequest, config: Obj) -> tuple[Obj, list[Entry]]:
    """Apply to an absent object: the configuration is the object, entirely owned by the applier."""
    entry = Entry(req.manager, "Apply", req.api_version, req.now, paths=set(flatten(config)))
    return config, [entry]
