"""`kepler-admin create-admin`, run as a user runs it beside `make run`: it must find the devstack's
database from the state file the devstack writes, say where it connected, and fail in one line."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from kepler_db import User
from kepler_devstack.embedded import port_is_free
from kepler_devstack.state import recorded

PASSWORD = "a long enough passphrase"


def run_admin(data_dir: Path, email: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """No KEPLER_DATABASE_URL: like a shell where only `make run` knows where the database is."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEPLER_")}
    argv = [sys.executable, "-m", "kepler_gateway.admin", "create-admin", "--email", email]
    return subprocess.run(
        [*argv, "--password-stdin"], input=PASSWORD + "\n", text=True, capture_output=True, check=False,
        cwd=cwd, env=env | {"KEPLER_DATA_DIR": str(data_dir)},
    )  # fmt: skip


def unused_port() -> int:
    return next(port for port in range(47000, 48000) if port_is_free(port))


class TestCreateAdmin:
    async def test_uses_the_database_the_running_devstack_recorded(
        self, tmp_path: Path, database_url: str, redis_url: str, engine: AsyncEngine
    ) -> None:
        """Before, it connected to 127.0.0.1:5432/kepler whatever `make run` used."""
        email = f"first-{secrets.token_hex(3)}@example.com"
        urls = {"KEPLER_DATABASE_URL": database_url, "KEPLER_REDIS_URL": redis_url}
        with recorded(tmp_path, urls):
            result = run_admin(tmp_path, email, cwd=tmp_path)

        assert result.returncode == 0, result.stderr
        url = make_url(database_url)
        assert f"database {url.database}" in result.stdout
        assert str(tmp_path / "stack.json") in result.stdout
        if url.password:
            assert url.password not in result.stdout
        async with engine.connect() as conn:
            admin = (await conn.execute(select(User.is_admin).where(User.email == email))).scalar_one()
        assert admin is True

    def test_unreachable_database_is_one_line_naming_it(self, tmp_path: Path) -> None:
        port = unused_port()
        database = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/kepler"
        (tmp_path / "stack.json").write_text(json.dumps({"database_url": database}))

        result = run_admin(tmp_path, "someone@example.com", cwd=tmp_path)

        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().count("\n") == 0
        assert f"Cannot use PostgreSQL at 127.0.0.1:{port}, database kepler" in result.stderr

    def test_without_a_running_stack_it_says_to_start_one(self, tmp_path: Path) -> None:
        result = run_admin(tmp_path / "nothing-here", "someone@example.com", cwd=tmp_path)

        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert "No running Kepler stack found" in result.stderr
        assert "make run" in result.stderr
