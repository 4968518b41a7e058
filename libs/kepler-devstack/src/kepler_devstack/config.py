"""Where the devstack keeps its state and which ports it uses, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_GATEWAY_PORT = 8000
ENVIRONMENT = """\
  KEPLER_DATA_DIR       embedded PostgreSQL and Redis data, kept across runs (default <repo>/.kepler)
  KEPLER_GATEWAY_PORT   gateway port (default 8000); the four services take the next four ports
  KEPLER_DATABASE_URL   use this PostgreSQL instead of the embedded one
  KEPLER_REDIS_URL      use this Redis instead of the embedded one
  KEPLER_SANDBOX        1: also start a simulated Kubernetes (a contract fake) and deploy to it;
                        its objects are kept in <data dir>/sandbox/cluster.json across runs
  KEPLER_LOG_JSON       true: every line (devstack, services, workers) one JSON object (default: text)
"""


def find_repo_root(start: Path) -> Path:
    """`make run` may be started from a subdirectory; the workspace root is the one holding uv.lock."""
    for directory in (start, *start.parents):
        if (directory / "uv.lock").is_file() or (directory / "alembic.ini").is_file():
            return directory
    return start


@dataclass(frozen=True)
class StackConfig:
    """`database_url` / `redis_url` set means "use these servers" and no embedded server is started."""

    root: Path
    data_dir: Path
    gateway_port: int
    database_url: str | None
    redis_url: str | None
    sandbox: bool = False
    log_json: bool = False

    @property
    def sandbox_port(self) -> int:
        return self.gateway_port + 10

    @property
    def sandbox_state_file(self) -> Path:
        return self.data_dir / "sandbox" / "cluster.json"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> StackConfig:
        env = os.environ if environ is None else environ
        root = find_repo_root((cwd or Path.cwd()).resolve())
        return cls(
            root=root,
            data_dir=Path(env.get("KEPLER_DATA_DIR") or root / ".kepler").resolve(),
            gateway_port=int(env.get("KEPLER_GATEWAY_PORT") or DEFAULT_GATEWAY_PORT),
            database_url=env.get("KEPLER_DATABASE_URL") or None,
            redis_url=env.get("KEPLER_REDIS_URL") or None,
            sandbox=(env.get("KEPLER_SANDBOX") or "").lower() in ("1", "true", "yes"),
            log_json=(env.get("KEPLER_LOG_JSON") or "").lower() in ("1", "true", "yes", "on"),
        )
