"""Schema migrations (Alembic), driven from code: no alembic.ini is needed at run time.

    python -m core.migrate upgrade [--url URL]
    python -m core.migrate current [--url URL]
    python -m core.migrate revision -m "message" --rev-id 0002_name

``revision`` autogenerates against a scratch SQLite database upgraded to the current head, so the new
revision holds exactly what the models add; review it, then run the test suite (it upgrades both
SQLite and PostgreSQL and compares the result with the models).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from .db import make_engine

_PG_MIGRATION_LOCK = 0x65_5345_414C  # "eSEAL"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Every module defining ORM models; env.py imports them so autogenerate sees all tables.
MODEL_MODULES: list[str] = [
    "core.audit",
    "core.tokens",
    "hsm_adapters.soft",
    "seal_registry.models",
    "signer.batch_models",
    "seal_registry.federation_models",
    "licence_store.models",
]


def import_models() -> None:
    for name in MODEL_MODULES:
        importlib.import_module(name)


def alembic_config(url: str | None = None, *, load_models: bool = True) -> Config:
    cfg = Config()
    # ConfigParser interpolates '%', which may appear in a path.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    # Files are named by the revision id alone, e.g. 0002_soft_keys.py.
    cfg.set_main_option("file_template", "%%(rev)s")
    # URLs travel as attributes, not options, for the same reason (percent-encoded query strings).
    cfg.attributes["url"] = url
    cfg.attributes["load_models"] = load_models
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision`` in one transaction where the backend allows."""
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Several service processes may start at once; only one may migrate at a time.
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            cfg = alembic_config(url, load_models=False)
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at (None when never migrated)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head() -> str | None:
    """The newest revision shipped with this code."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def is_current(url: str) -> bool:
    return current(url) == head()


def revision(message: str, rev_id: str | None = None) -> None:
    """Autogenerate a new revision from the models against a scratch database at the current head."""
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'autogen.db'}"
        upgrade(url)
        command.revision(alembic_config(url), message=message, autogenerate=True, rev_id=rev_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.migrate", description="eseal schema migrations")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("upgrade", "current"):
        p = sub.add_parser(name)
        p.add_argument("--url", help="SQLAlchemy URL (default: the service settings)")
    p = sub.add_parser("revision", help="autogenerate a new revision from the models")
    p.add_argument("-m", "--message", required=True)
    p.add_argument("--rev-id", help="revision id, e.g. 0002_soft_keys")
    args = parser.parse_args(argv)
    if args.cmd == "revision":
        revision(args.message, args.rev_id)
        return 0
    from .settings import get_settings

    settings = get_settings()
    if args.url is None:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    url = args.url or settings.resolved_database_url()
    if args.cmd == "upgrade":
        upgrade(url)
    print(current(url) or "(none)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
