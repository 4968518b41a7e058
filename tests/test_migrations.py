"""The one Alembic history: runs down and up again cleanly, and matches the models exactly."""

import asyncio
import json
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from kepler_db import Base
from kepler_kit.testing.database import TestDatabase, alembic_config, create_test_database, drop_test_database


@pytest.fixture(scope="module")
def scratch_database(test_database: TestDatabase) -> Iterator[TestDatabase]:
    database = create_test_database(test_database.server_url, f"kepler_mig_{secrets.token_hex(4)}")
    yield database
    drop_test_database(database)


def _run(url: str, statements: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """Each statement in one transaction; the first column of each result row (of those that return rows)."""

    async def run() -> list[Any]:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                out = []
                for statement, params in statements:
                    result = await conn.execute(text(statement), params)
                    out += list(result.scalars()) if result.returns_rows else []
                return out
        finally:
            await engine.dispose()

    return asyncio.run(run())


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

    def test_0006_renames_port_names_a_real_apiserver_refuses(self, scratch_database: TestDatabase) -> None:
        """`8080` and `a--b` passed Kepler's old rule; reading them back now fails IANA_SVC_NAME validation,
        so the migration renames them (as import names an unnamed port), and leaves valid names alone."""
        config = alembic_config(scratch_database.url)
        command.downgrade(config, "0005")
        ports = [
            {"name": "8080", "port": 8080, "protocol": "TCP"},
            {"name": "a--b", "port": 53, "protocol": "UDP"},
            {"name": "http", "port": 80, "protocol": "TCP"},
        ]
        ids = {"ns": uuid.uuid4(), "app": uuid.uuid4(), "release": uuid.uuid4()}
        _run(
            scratch_database.url,
            [
                (
                    "INSERT INTO namespaces (id, name, display_name, description, status)"
                    " VALUES (:ns, 'mig', '', '', 'active')",
                    ids,
                ),
                (
                    "INSERT INTO apps"
                    " (id, namespace_id, name, description, default_branch, dockerfile_path, ports)"
                    " VALUES (:app, :ns, 'web', '', 'main', 'Dockerfile', CAST(:p AS jsonb))",
                    {**ids, "p": json.dumps(ports)},
                ),
                (
                    "INSERT INTO releases (id, app_id, number, spec, cause)"
                    " VALUES (:release, :app, 1, CAST(:s AS jsonb), 'deploy')",
                    {**ids, "s": json.dumps({"image": "nginx", "ports": ports})},
                ),
            ],
        )
        command.upgrade(config, "head")
        renamed = ["port-8080", "port-53-udp", "http"]
        app_ports, spec = _run(
            scratch_database.url,
            [
                ("SELECT ports FROM apps WHERE id = :app", ids),
                ("SELECT spec FROM releases WHERE id = :release", ids),
                ("DELETE FROM apps WHERE id = :app", ids),
                ("DELETE FROM namespaces WHERE id = :ns", ids),
            ],
        )
        assert [p["name"] for p in app_ports] == renamed
        assert [p["name"] for p in spec["ports"]] == renamed
        assert spec["image"] == "nginx"
