"""Create a throw-away database on a test server and migrate it with Alembic."""

import asyncio
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

REPO_ROOT = Path(__file__).resolve().parents[5]


@dataclass(frozen=True)
class TestDatabase:
    __test__ = False
    server_url: str
    name: str

    @property
    def url(self) -> str:
        return make_url(self.server_url).set(database=self.name).render_as_string(hide_password=False)


def alembic_config(url: str) -> Config:
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def _admin(server_url: str, statement: str) -> None:
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def create_test_database(server_url: str, name: str) -> TestDatabase:
    database = TestDatabase(server_url, name)
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    command.upgrade(alembic_config(database.url), "head")
    return database


def drop_test_database(database: TestDatabase) -> None:
    asyncio.run(_admin(database.server_url, f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)'))
