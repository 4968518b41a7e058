"""The one Alembic history: runs down and up again cleanly, and matches the models exactly."""

import asyncio
import secrets
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine

from kepler_db import Base
from kepler_kit.testing.database import TestDatabase, alembic_config, create_test_database, drop_test_database


@pytest.fixture(scope="module")
def scratch_database(test_database: TestDatabase) -> Iterator[TestDatabase]:
    database = create_test_database(test_database.server_url, f"kepler_mig_{secrets.token_hex(4)}")
    yield database
    drop_test_database(database)


def _inspect(url: str, probe: "type[_Probe]") -> "_Probe":
    async def run() -> _Probe:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(probe)
        finally:
            await engine.dispose()

    return asyncio.run(run())


class _Probe:
    def __init__(self, connection: Connection) -> None:
        self.tables = set(inspect(connection).get_table_names())
        self.enums = {e["name"] for e in inspect(connection).get_enums()}  # type: ignore[attr-defined]
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        self.diff = compare_metadata(context, Base.metadata)


class TestMigrations:
    def test_head_matches_models(self, scratch_database: TestDatabase) -> None:
        probe = _inspect(scratch_database.url, _Probe)
        assert probe.diff == []
        assert {"users", "namespaces", "memberships", "apps", "audit_events"} <= probe.tables

    def test_down_to_base_and_up_again(self, scratch_database: TestDatabase) -> None:
        config = alembic_config(scratch_database.url)
        command.downgrade(config, "base")
        empty = _inspect(scratch_database.url, _Probe)
        assert empty.tables == {"alembic_version"}
        assert empty.enums == set()
        command.upgrade(config, "head")
        assert _inspect(scratch_database.url, _Probe).diff == []
