"""`kepler-admin create-admin --email you@example.com` (or `make admin EMAIL=…`): the first platform admin.

Kepler ships no default account; the password is prompted for, or read from one line of stdin with
`--password-stdin` (for scripts). The email must be one the login accepts, and an existing user who is not
an admin is promoted (their password reset) only with `--promote`. The database is KEPLER_DATABASE_URL when
set, else the one of the devstack running on this checkout (`make run` records it in
`<data dir>/stack.json`); the command says which it used, and answers a database it cannot reach with one
line, not a traceback. Used wrongly, it says so in one line and exits 2.
"""

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path
from typing import NamedTuple, NoReturn

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from kepler_db import User
from kepler_gateway.identity import passwords, repository
from kepler_gateway.identity.schemas import Email
from kepler_kit.db import create_sessionmaker

STATE_FILE = "stack.json"  # written by kepler_devstack.state while `make run` runs
_EMAIL: TypeAdapter[str] = TypeAdapter(Email)  # the login's own rule: an admin it refuses could never log in


def usage_error(message: str) -> NoReturn:
    """One line on stderr and exit status 2, argparse's for a command used wrongly."""
    sys.stderr.write(f"kepler-admin: {message}\n")
    raise SystemExit(2)


class Target(NamedTuple):
    """A database URL and where it came from, for the line that says what the command connected to."""

    url: str
    source: str


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kepler-admin",
        epilog="database: KEPLER_DATABASE_URL, else the running `make run` ($KEPLER_DATA_DIR/stack.json)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-admin", help="create (or promote) a platform admin")
    create.add_argument("--email", required=True)
    create.add_argument("--name", default="")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of stdin"
    )
    create.add_argument(
        "--promote", action="store_true", help="make an existing user who is not an admin a platform admin"
    )
    return parser.parse_args(argv)


def _email(email: str) -> str:
    try:
        return _EMAIL.validate_python(email)
    except ValidationError:
        usage_error(f"{email!r} is not an email address the login accepts (name@domain.tld, one line)")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    no_terminal = "no terminal to prompt for the password on: pipe it in with --password-stdin"
    if not sys.stdin.isatty():
        usage_error(no_terminal)
    try:
        first, second = getpass.getpass("Password: "), getpass.getpass("Again: ")
    except EOFError:
        usage_error(no_terminal)
    if first != second:
        raise SystemExit("The passwords differ.")
    return first


def data_dir(cwd: Path) -> Path:
    """Where `make run` keeps its state: KEPLER_DATA_DIR, else `.kepler` in the checkout holding `cwd`."""
    if configured := os.environ.get("KEPLER_DATA_DIR"):
        return Path(configured).resolve()
    for directory in (cwd, *cwd.parents):
        if (directory / "uv.lock").is_file() or (directory / "alembic.ini").is_file():
            return directory / ".kepler"
    return cwd / ".kepler"


def database_target(cwd: Path) -> Target:
    """KEPLER_DATABASE_URL, else the running devstack's; never a guessed default on 127.0.0.1:5432."""
    if url := os.environ.get("KEPLER_DATABASE_URL"):
        return Target(url, "KEPLER_DATABASE_URL")
    state = data_dir(cwd) / STATE_FILE
    try:
        return Target(str(json.loads(state.read_text())["database_url"]), str(state))
    except FileNotFoundError:
        raise SystemExit(
            f"No running Kepler stack found ({state} does not exist): start `make run` first, "
            "or set KEPLER_DATABASE_URL (and KEPLER_DATA_DIR if `make run` uses another data dir)."
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"Cannot read {state}: {exc}") from None


def describe(url: str) -> str:
    """`host:port/database` (or the Unix socket directory), never the password."""
    parsed = make_url(url)
    socket_dir = parsed.query.get("host")
    if socket_dir:
        where = f"socket {socket_dir if isinstance(socket_dir, str) else socket_dir[0]}"
    else:
        where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    return f"PostgreSQL at {where}, database {parsed.database or '(default)'}"


async def create_admin(
    database_url: str, email: str, name: str, password: str, *, promote: bool = False
) -> str:
    problems = passwords.policy_problems(password, email)
    if problems:
        raise SystemExit("The password " + "; ".join(problems) + ".")
    engine = create_async_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            user = await repository.user_by_email(session, email)
            if user is None:
                user = User(email=email, display_name=name or email.split("@")[0])
                session.add(user)
            elif not user.is_admin and not promote:
                usage_error(
                    f"{user.email} is an existing user who is not an admin; "
                    "add --promote to make them a platform admin (and reset their password)"
                )
            user.is_admin, user.disabled_at = True, None
            user.password_hash = await passwords.hash_password(password)
        return f"{email} is a platform admin."
    finally:
        await engine.dispose()


def _reason(exc: BaseException) -> str:
    """The driver's own words, first line only: enough to act on, short enough for one line."""
    origin = getattr(exc, "orig", None) or exc
    text = str(origin).strip().splitlines()
    return f"{type(origin).__name__}: {text[0]}" if text else type(origin).__name__


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    email = _email(args.email)
    target = database_target(Path.cwd())
    sys.stdout.write(f"Using {describe(target.url)} (from {target.source})\n")
    password = _password(args.password_stdin)
    try:
        message = asyncio.run(create_admin(target.url, email, args.name, password, promote=args.promote))
    except (OSError, SQLAlchemyError) as exc:
        raise SystemExit(f"Cannot use {describe(target.url)}: {_reason(exc)}") from None
    sys.stdout.write(message + "\n")


if __name__ == "__main__":
    main()
