"""``python -m api`` runs the ``eseal`` CLI (``python -m api.cli`` would load api.cli twice)."""

from api.cli import app

app()
