"""RFC 9457 problem+json for every error the API returns, with a stable ``code`` member."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import EsealError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("eseal.api")

_HTTP_CODES = {
    400: ("bad_request", "请求无效", "Bad request"),
    401: ("unauthenticated", "未认证", "Not authenticated"),
    403: ("permission_denied", "无权操作", "Permission denied"),
    404: ("not_found", "未找到", "Not found"),
    405: ("method_not_allowed", "方法不允许", "Method not allowed"),
    413: ("input_too_large", "输入过大", "Input too large"),
    415: ("unsupported_media_type", "不支持的媒体类型", "Unsupported media type"),
}


def problem(status: int, code: str, zh: str, en: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://eseal.invalid/problems/{code}",
        "title": f"{zh} / {en}",
        "status": status,
        "code": code,
        "detail": f"{zh} / {en}",
        "detail_zh": zh,
        "detail_en": en,
    }
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(EsealError)
    async def _eseal_error(_req: Request, exc: EsealError) -> JSONResponse:
        body = exc.to_problem()
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(body, status_code=exc.status, media_type=PROBLEM_JSON, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        return problem(
            422, "validation_error", "请求参数校验失败", "Request validation failed", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, zh, en = _HTTP_CODES.get(exc.status_code, ("http_error", "请求错误", "HTTP error"))
        if isinstance(exc.detail, str) and exc.detail and exc.status_code not in _HTTP_CODES:
            en = exc.detail
        return problem(exc.status_code, code, zh, en)

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        # Log the cause for operators; never echo internals (which might include secrets) to clients.
        log.exception("unhandled error", exc_info=exc)
        return problem(500, "internal", "服务器内部错误", "Internal server error")
