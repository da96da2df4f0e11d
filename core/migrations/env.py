"""Alembic environment, run by :mod:`core.migrate` (or the ``alembic`` CLI given a config).

The connection comes from ``config.attributes["connection"]`` when the caller shares one, else from
``config.attributes["url"]``, the ``sqlalchemy.url`` option, or the service settings.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection
from sqlalchemy.types import TypeDecorator

from core.db import Base, make_engine
from core.migrate import import_models
from core.settings import get_settings

config = context.config

# Running existing revisions needs no model metadata; autogenerate needs every model module imported.
if config.attributes.get("load_models", True):
    import_models()
target_metadata = Base.metadata


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # Revisions state the plain column type rather than importing application TypeDecorators, so a
    # later refactor of core.db cannot break old migrations.
    if type_ == "type" and isinstance(obj, TypeDecorator):
        impl = obj.impl_instance
        if type(impl).__module__ == "sqlalchemy.sql.sqltypes":
            return f"sa.{impl!r}"
    return False


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    return str(url) if url else get_settings().resolved_database_url()


def _configure(**kwargs: Any) -> None:
    # Batch mode everywhere: the same revision must run on SQLite (which cannot ALTER most things).
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        render_item=_render_item,
        **kwargs,
    )


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    shared = config.attributes.get("connection")
    if shared is not None:
        _run(shared)
        return
    engine = make_engine(_url())
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
