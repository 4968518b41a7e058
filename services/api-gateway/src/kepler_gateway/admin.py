"""`python -m kepler_gateway.admin create-admin --email you@example.com`: the first platform admin.

Kepler ships no default account; the password is read from stdin (`--password-stdin`) or prompted for.
"""

import argparse
import asyncio
import getpass
import sys

from sqlalchemy.ext.asyncio import create_async_engine

from kepler_db import User
from kepler_gateway.identity import passwords, repository
from kepler_kit.db import create_sessionmaker
from kepler_kit.settings import KeplerSettings


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kepler_gateway.admin")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-admin", help="create (or promote) a platform admin")
    create.add_argument("--email", required=True)
    create.add_argument("--name", default="")
    create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    return parser.parse_args(argv)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first, second = getpass.getpass("Password: "), getpass.getpass("Again: ")
    if first != second:
        raise SystemExit("The passwords differ.")
    return first


async def create_admin(database_url: str, email: str, name: str, password: str) -> str:
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
            user.is_admin, user.disabled_at = True, None
            user.password_hash = await passwords.hash_password(password)
        return f"{email} is a platform admin."
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    password = _password(args.password_stdin)
    message = asyncio.run(create_admin(KeplerSettings().database_url, args.email, args.name, password))
    sys.stdout.write(message + "\n")


if __name__ == "__main__":
    main()
