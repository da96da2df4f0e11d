"""Alembic environment and revisions (driven from :mod:`core.migrate`; no alembic.ini needed)."""
