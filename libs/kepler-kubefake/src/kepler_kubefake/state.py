"""`--state-file`: the fake's objects kept on disk, so the sandbox of `make run` still holds what Kepler
deployed after a restart (Kepler otherwise keeps reporting apps as rolled out on an empty cluster).

An explicit option: by default the fake, like a test wants it, starts empty and forgets everything. Writes
are debounced (a rollout is dozens of writes in a second) and atomic (a temporary file renamed over the
old one), and a final write happens at shutdown.
"""

import asyncio
import json
import logging
import os
from pathlib import Path

from kepler_kubefake.kinds import Obj, Registry, ResourceKind
from kepler_kubefake.store import Change, Store

log = logging.getLogger("kepler_kubefake.state")


class StateFile:
    def __init__(self, path: Path, store: Store, registry: Registry, debounce_s: float = 0.5) -> None:
        self.path, self._store, self._registry = Path(path), store, registry
        self._debounce_s = debounce_s
        self._pending: asyncio.TimerHandle | None = None
        self._following = False

    def load(self) -> int:
        """Restore the saved objects (none if there is no file yet); returns how many were restored. An
        unreadable file is moved aside rather than crash-looping the sandbox."""
        try:
            snapshot = json.loads(self.path.read_text())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            aside = self.path.with_name(self.path.name + ".unreadable")
            log.warning("state file %s unreadable (%s); starting empty, kept it as %s", self.path, exc, aside)
            self.path.replace(aside)
            return 0
        return self._store.restore(snapshot, self._kind_of)

    def _kind_of(self, obj: Obj) -> ResourceKind | None:
        return self._registry.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))

    def follow(self) -> None:
        """Save after each burst of changes from now on."""
        self._store.listen(self._changed)
        self._following = True

    def _changed(self, _: Change) -> None:
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(self._debounce_s, self.save)

    def save(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".tmp")
        partial.write_text(json.dumps(self._store.snapshot(), separators=(",", ":")))
        os.replace(partial, self.path)

    def close(self) -> None:
        """The final save; later changes (none: the server has stopped) are not followed."""
        if self._following:
            self._store.unlisten(self._changed)
            self._following = False
        self.save()
