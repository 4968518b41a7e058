"""`kepler-admin create-admin`, run as a user runs it beside `make run`: it must find the devstack's
database from the state file the devstack writes, say where it connected, and fail in one line."""

import json
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from kepler_db import User
from kepler_devstack.embedded import port_is_free
from kepler_devstack.state import recorded

PASSWORD = "a long enough passphrase"


def run_admin(
    data_dir: Path, email: str, cwd: Path, *extra: str, password_stdin: bool = True
) -> subprocess.CompletedProcess[str]:
    """No KEPLER_DATABASE_URL: like a shell where only `make run` knows where the database is. Without
    `password_stdin`: no terminal either (a new session, stdin from /dev/null), as in CI or a script."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEPLER_")}
    argv = [sys.executable, "-m", "kepler_gateway.admin", "create-admin", "--email", email, *extra]
    if not password_stdin:
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, text=True, capture_output=True, check=False, cwd=cwd,
            env=env | {"KEPLER_DATA_DIR": str(data_dir)}, start_new_session=True,
        )  # fmt: skip
    return subprocess.run(
        [*argv, "--password-stdin"], input=PASSWORD + "\n", text=True, capture_output=True, check=False,
        cwd=cwd, env=env | {"KEPLER_DATA_DIR": str(data_dir)},
    )  # fmt: skip


def refused_in_one_line(result: subprocess.CompletedProcess[str]) -> str:
    """Exit status 2 (used wrongly) and one line on stderr, no traceback: the line."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    return result.stderr.strip()


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


class TestCreateAdminRefuses:
    async def test_an_email_the_login_refuses(
        self, tmp_path: Path, database_url: str, redis_url: str, engine: AsyncEngine
    ) -> None:
        """`EMAIL=not-an-email` created an admin the login (422 on its email) never lets in."""
        with recorded(tmp_path, {"KEPLER_DATABASE_URL": database_url, "KEPLER_REDIS_URL": redis_url}):
            for email in ("not-an-email", "admin@localhost", "ad\x01min@example.com"):
                line = refused_in_one_line(run_admin(tmp_path, email, cwd=tmp_path))
                assert "not an email address the login accepts" in line
        async with engine.connect() as conn:
            stored = await conn.scalar(
                select(User.id).where(User.email.in_(["not-an-email", "admin@localhost"]))
            )
        assert stored is None

    def test_no_terminal_and_no_password_stdin(
        self, tmp_path: Path, database_url: str, redis_url: str
    ) -> None:
        """It crashed with an EOFError traceback from the password prompt."""
        with recorded(tmp_path, {"KEPLER_DATABASE_URL": database_url, "KEPLER_REDIS_URL": redis_url}):
            result = run_admin(tmp_path, "someone@example.com", tmp_path, password_stdin=False)
        assert "--password-stdin" in refused_in_one_line(result)

    async def test_an_existing_user_who_is_not_an_admin_needs_promote(
        self, tmp_path: Path, database_url: str, redis_url: str, engine: AsyncEngine
    ) -> None:
        """It silently made any user a platform admin and reset their password."""
        email = f"member-{secrets.token_hex(3)}@example.com"
        async with engine.begin() as conn:
            await conn.execute(insert(User).values(id=uuid.uuid4(), email=email, password_hash="theirs"))
        with recorded(tmp_path, {"KEPLER_DATABASE_URL": database_url, "KEPLER_REDIS_URL": redis_url}):
            assert "--promote" in refused_in_one_line(run_admin(tmp_path, email, cwd=tmp_path))
            async with engine.connect() as conn:
                row = (
                    await conn.execute(select(User.is_admin, User.password_hash).where(User.email == email))
                ).one()
            assert tuple(row) == (False, "theirs")

            promoted = run_admin(tmp_path, email, tmp_path, "--promote")
        assert promoted.returncode == 0, promoted.stderr
        async with engine.connect() as conn:
            row = (
                await conn.execute(select(User.is_admin, User.password_hash).where(User.email == email))
            ).one()
        assert row.is_admin is True
        assert row.password_hash != "theirs"
