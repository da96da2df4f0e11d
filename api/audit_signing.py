"""Periodic signing of the audit chain head with the service key (a background task of the server)."""

from __future__ import annotations

import asyncio
import logging

from core.audit import current_head, sign_head
from core.db import transaction
from seal_registry.pki import service_signer

from .context import ServiceContext

log = logging.getLogger("eseal.audit")


def sign_head_if_moved(ctx: ServiceContext) -> int | None:
    """Sign the current head unless it is already signed; returns the signed seq (None: empty chain)."""
    with transaction(ctx.sessions) as s:
        head = current_head(s)
        if head.seq == 0:
            return None
        sign_head(s, service_signer(s, ctx.keystore))  # idempotent for an already signed head
        return head.seq


async def run_periodically(ctx: ServiceContext, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(sign_head_if_moved, ctx)
        except Exception:  # keep the loop alive; the next round retries
            log.exception("signing the audit chain head failed")
