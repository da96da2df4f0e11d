"""Scheduled licence expiry (a background task of the server): every
``ESEAL_LICENCE_EXPIRY_INTERVAL_S`` seconds, licences whose validity ended become expired (05), as
``eseal licence expire`` / ``POST /v1/licences/expire`` do on demand.

Every worker process of ``eseal serve --workers N`` runs its own loop; they need no coordination
because :func:`licence_store.lifecycle.expire_due` locks each row and checks it again before it
changes it, so a licence is expired and audited once however many sweeps meet on it. A failed
sweep is logged and the next round retries. On shutdown the loop stops between transactions: the
sweep's current transaction is allowed to finish before the service closes its database.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Final

from core.db import transaction
from licence_store.lifecycle import SYSTEM_ACTOR, expire_due

from .context import ServiceContext

log = logging.getLogger("eseal.licence")

# Licences expired per transaction: short transactions keep the SQLite write lock free for requests.
BATCH: Final = 200


def expire_now(ctx: ServiceContext, stop: threading.Event | None = None, *, batch: int = BATCH) -> int:
    """One sweep, in transactions of ``batch`` licences, until none is due (or ``stop`` is set)."""
    total = 0
    while stop is None or not stop.is_set():
        with transaction(ctx.sessions) as s:
            done = expire_due(s, actor=SYSTEM_ACTOR, limit=batch)
        total += len(done)
        if len(done) < batch:
            break
    return total


async def run_periodically(ctx: ServiceContext, interval_s: float) -> None:
    """Sweep every ``interval_s`` seconds until cancelled; the first sweep one interval after start."""
    stop = threading.Event()
    try:
        while True:
            await asyncio.sleep(interval_s)
            started = time.monotonic()
            sweep = asyncio.ensure_future(asyncio.to_thread(expire_now, ctx, stop))
            try:
                expired = await asyncio.shield(sweep)
            except asyncio.CancelledError:
                # Shutting down: let the thread end its transaction before the database is closed.
                stop.set()
                await asyncio.wait([sweep])
                if not sweep.cancelled() and sweep.exception() is not None:
                    log.error("licence expiry sweep failed during shutdown", exc_info=sweep.exception())
                raise
            except Exception:  # keep the loop alive; the next round retries
                log.exception("licence expiry sweep failed")
                continue
            if expired:
                log.info(
                    "licence expiry: %d licence(s) expired in %.2f s", expired, time.monotonic() - started
                )
    finally:
        stop.set()


__all__ = ["BATCH", "expire_now", "run_periodically"]
