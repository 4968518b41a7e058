"""`metadata.managedFields`: who owns which field, updated on every write like the real field manager.

Updates (POST, PUT, PATCH) silently take ownership of the fields whose value they change; applies own exactly
the fields in their configuration (see `apply.py`). Ownership of fields that no longer exist is dropped.
"""

from collections.abc import Set
from dataclasses import dataclass, field

from kepler_kubefake.fields import FlatObject, Path, flatten, from_fields_v1, to_fields_v1
from kepler_kubefake.kinds import Obj

_MISSING = object()


@dataclass(slots=True)
class Entry:
    manager: str
    operation: str  # "Apply" | "Update"
    api_version: str
    time: str
    subresource: str = ""
    paths: set[Path] = field(default_factory=set)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.manager, self.operation, self.subresource

    def to_json(self) -> Obj:
        out: Obj = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(self.paths),
        }
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def read_entries(obj: Obj | None) -> list[Entry]:
    entries = []
    for raw in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        entries.append(
            Entry(
                manager=raw.get("manager", ""),
                operation=raw.get("operation", "Update"),
                api_version=raw.get("apiVersion", ""),
                time=raw.get("time", ""),
                subresource=raw.get("subresource", ""),
                paths=from_fields_v1(raw.get("fieldsV1") or {}),
            )
        )
    return entries


def _entry(entries: list[Entry], key: tuple[str, str, str], api_version: str, now: str) -> Entry:
    for e in entries:
        if e.key == key:
            e.api_version, e.time = api_version, now
            return e
    manager, operation, subresource = key
    e = Entry(manager, operation, api_version, now, subresource)
    entries.append(e)
    return e


def changed_paths(old: FlatObject, new: FlatObject) -> set[Path]:
    return {p for p, v in new.items() if old.get(p, _MISSING) != v}


def record_update(
    old: Obj | None, new: FlatObject, manager: str, api_version: str, now: str, subresource: str = ""
) -> list[Entry]:
    """The entries after a non-apply write by `manager`: it takes over every field it changed."""
    entries = read_entries(old)
    changed = changed_paths(flatten(old) if old else {}, new)
    if not changed:
        return entries
    for e in entries:
        e.paths -= changed
    _entry(entries, (manager, "Update", subresource), api_version, now).paths |= changed
    return entries


def prune(entries: list[Entry], present: Set[Path]) -> list[Entry]:
    """Drop ownership of fields that are gone, and managers left owning nothing."""
    for e in entries:
        e.paths &= present
    return [e for e in entries if e.paths]


def write_entries(obj: Obj, entries: list[Entry]) -> None:
    if entries:
        obj["metadata"]["managedFields"] = [e.to_json() for e in entries]
    else:
        obj["metadata"].pop("managedFields", None)


def same_ownership(a: list[Entry], b: list[Entry]) -> bool:
    """Ownership equality ignoring timestamps: a no-op apply must not count as a change."""
    return {e.key: e.paths for e in a} == {e.key: e.paths for e in b}
