"""Migrations build the models' schema identically on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.schema import MetaData

from core import audit, migrate
from core.db import Base, make_engine

AUDIT_TABLES = {"audit_entries", "audit_head", "audit_head_signatures"}


def _metadata_of(tables: set[str]) -> MetaData:
    md = MetaData(naming_convention=Base.metadata.naming_convention)
    for name in tables:
        Base.metadata.tables[name].to_metadata(md)
    return md


def _is_version_table(diff: Any) -> bool:
    return isinstance(diff, tuple) and len(diff) > 1 and getattr(diff[1], "name", None) == "alembic_version"


def test_upgrade_reaches_head_and_matches_the_models(db_url: str) -> None:
    assert migrate.current(db_url) is None
    migrate.upgrade(db_url)
    assert migrate.current(db_url) == migrate.head() and migrate.is_current(db_url)
    migrate.upgrade(db_url)  # idempotent
    eng = make_engine(db_url)
    try:
        with eng.connect() as conn:
            assert set(inspect(conn).get_table_names()) >= AUDIT_TABLES
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            # Every model of every package, not only the audit tables: the migrations must build
            # exactly the schema the code declares.
            migrate.import_models()
            diff = [d for d in compare_metadata(ctx, Base.metadata) if not _is_version_table(d)]
            assert diff == []
            head = conn.execute(text("SELECT id, seq, entry_hash FROM audit_head")).all()
            assert [tuple(r) for r in head] == [(1, 0, audit.GENESIS_HASH)]
    finally:
        eng.dispose()


def _reflected(conn: Connection, table: str) -> tuple[list[tuple[str, bool, str, int | None]], Any, Any]:
    insp = inspect(conn)
    columns = [
        (c["name"], c["nullable"], _SPELLING.get(type(c["type"]).__name__.upper(), "?"), _length(c["type"]))
        for c in insp.get_columns(table)
    ]
    indexes = sorted((i["name"], tuple(i["column_names"])) for i in insp.get_indexes(table))
    return columns, insp.get_pk_constraint(table), indexes


def _length(type_: Any) -> int | None:
    return getattr(type_, "length", None)


# Reflected type names per dialect, mapped to one spelling; anything unexpected becomes "?".
_SPELLING = {
    "BIGINT": "BIGINT",
    "INTEGER": "INTEGER",
    "VARCHAR": "VARCHAR",
    "TEXT": "TEXT",
    "BLOB": "BINARY",
    "BYTEA": "BINARY",
    "DATETIME": "DATETIME",
    "TIMESTAMP": "DATETIME",
}
_MODEL_SPELLING = {
    "BigInteger": "BIGINT",
    "Integer": "INTEGER",
    "String": "VARCHAR",
    "Text": "TEXT",
    "LargeBinary": "BINARY",
    "UtcDateTime": "DATETIME",
}


def test_schema_is_the_same_on_both_backends(migrated_url: str) -> None:
    """The reflected schema, normalised, equals the models' on whichever backend runs."""
    eng = make_engine(migrated_url)
    try:
        with eng.connect() as conn:
            for name in sorted(AUDIT_TABLES):
                table = Base.metadata.tables[name]
                columns, pk, indexes = _reflected(conn, name)
                assert columns == [
                    (c.name, bool(c.nullable), _MODEL_SPELLING[type(c.type).__name__], _length(c.type))
                    for c in table.columns
                ]
                assert (pk["name"], pk["constrained_columns"]) == (
                    table.primary_key.name,
                    [c.name for c in table.primary_key.columns],
                )
                assert indexes == sorted((i.name, tuple(c.name for c in i.columns)) for i in table.indexes)
    finally:
        eng.dispose()


def test_downgrade_to_base_and_back(migrated_url: str) -> None:
    eng = make_engine(migrated_url)
    try:
        with eng.begin() as conn:
            cfg = migrate.alembic_config(migrated_url, load_models=False)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        with eng.connect() as conn:
            assert not AUDIT_TABLES & set(inspect(conn).get_table_names())
    finally:
        eng.dispose()
    migrate.upgrade(migrated_url)
    assert migrate.current(migrated_url) == migrate.head()


def test_command_line_upgrade_and_current(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert migrate.main(["current", "--url", db_url]) == 0
    assert capsys.readouterr().out.strip() == "(none)"
    assert migrate.main(["upgrade", "--url", db_url]) == 0
    assert capsys.readouterr().out.strip() == migrate.head()
