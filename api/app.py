"""The FastAPI application. Thin: every route calls a service function of the domain packages."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from core.settings import Settings, get_settings

from . import audit_signing, licence_expiry, metrics, problems
from .context import ServiceContext, open_context
from .routes import audit, departments, federation, pki, seals, sign, system, tokens, tsa, verify
from .routes import batch as batch
from .routes import licence_admin as licence_admin
from .routes import licence_catalogue as licence_catalogue
from .routes import licence_holder as licence_holder
from .routes import licences as licences

DESCRIPTION = """
eseal — 电子印章与电子证照可信服务 / trust service for electronic seals and electronic licences
(SM2 / SM3 / SM4).

认证：`Authorization: Bearer es_…`（首次启动时打印一次性管理员令牌）。
Authentication: `Authorization: Bearer es_…` (the first start prints a one-time admin token).

错误均以 RFC 9457 `application/problem+json` 返回，`code` 字段稳定。
Errors are RFC 9457 `application/problem+json` with a stable `code` member.
"""


def create_app(settings: Settings | None = None, *, context: ServiceContext | None = None) -> FastAPI:
    settings = settings or get_settings()
    ctx = context or open_context(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        signer_task = asyncio.create_task(
            audit_signing.run_periodically(ctx, settings.audit_head_sign_interval_s)
        )
        expiry_task = (
            asyncio.create_task(licence_expiry.run_periodically(ctx, settings.licence_expiry_interval_s))
            if settings.licence_expiry_interval_s > 0
            else None
        )
        try:
            yield
        finally:
            signer_task.cancel()
            if expiry_task is not None:
                expiry_task.cancel()
                # Waits for a sweep in progress to commit or roll back before the context closes.
                await asyncio.gather(expiry_task, return_exceptions=True)
            if context is None:
                ctx.close()

    app = FastAPI(title="eseal", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.ctx = ctx
    problems.install(app)
    metrics.install(app)
    # The public verification routes first: a request is matched against the routes in order, and
    # verification is the busiest path (its paths are its own, so the order changes no answer).
    app.include_router(verify.router)
    app.include_router(system.router)
    app.include_router(tokens.router)
    app.include_router(audit.router)
    app.include_router(pki.router)
    app.include_router(departments.router)
    app.include_router(seals.router)
    app.include_router(tsa.router)
    app.include_router(sign.router)
    app.include_router(batch.router)
    app.include_router(federation.router)
    app.include_router(licences.router)
    app.include_router(licence_catalogue.router)
    app.include_router(licence_holder.router)
    app.include_router(licence_admin.router)
    return app


def create_server_app(settings: Settings | None = None, *, context: ServiceContext | None = None) -> FastAPI:
    """:func:`create_app` for a server process (``eseal serve``), with the objects that live as long
    as the process (modules, the app, the context, the registry's cached view once it is built)
    kept out of the cyclic garbage collector's full passes.

    A full pass walks every tracked object: with the service loaded that is about 125,000 objects
    and a 100-ms pause, once every couple of thousand verifications, which every request queued
    behind it waits out (the p99 of ``bench/verify_load.py``). Frozen, a full pass only walks what
    requests left behind. Not in :func:`create_app`: tests build many apps in one process, and
    frozen objects are only freed by reference counting.
    """
    app = create_app(settings, context=context)
    gc.collect()
    gc.freeze()
    return app
