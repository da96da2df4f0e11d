"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text

from ..context import ServiceContext
from ..security import get_context

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="存活检查 Liveness")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="就绪检查 Readiness (database and key store)")
def readyz(ctx: ServiceContext = Depends(get_context)) -> JSONResponse:  # noqa: B008
    checks: dict[str, Any] = {}
    try:
        with ctx.engine.connect() as conn:
            conn.execute(text("select 1"))
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports, it does not raise
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        ctx.keystore.list()
        checks["keystore"] = "ok"
    except Exception as exc:
        checks["keystore"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )
