"""The region's RFC 3161 time-stamping authority over HTTP (RFC 3161 section 3.4), public.

A request that is not a TimeStampReq is answered with a TimeStampResp of status rejection
(badDataFormat, badAlg, ...), which is how RFC 3161 clients expect refusals; only HTTP-level
problems (wrong media type, oversized body) are problem+json.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from core.errors import NotFound
from gmpki.tsp import FailureInfo, build_rejection
from signer.tsa import DEFAULT_POLICY_OID, TIMESTAMP_QUERY, TIMESTAMP_REPLY, TimeStampAuthority

from ..context import ServiceContext
from ..problems import PROBLEM_JSON, problem
from ..security import get_context
from ..uploads import read_body

router = APIRouter(prefix="/v1", tags=["tsa"])

MAX_QUERY_BYTES: Final = 64 * 1024


def _respond(ctx: ServiceContext, query: bytes) -> bytes:
    # ESEAL_TSA_POLICY_OID once core.settings grows the field; the placeholder until then.
    policy = ctx.settings.tsa_policy_oid or DEFAULT_POLICY_OID
    try:
        with ctx.sessions() as session:
            tsa = TimeStampAuthority.from_region(session, ctx.keystore, policy_oid=policy)
    except NotFound as exc:
        return build_rejection(FailureInfo.SYSTEM_FAILURE, exc.message_zh, exc.message_en)
    return tsa.respond(query)


@router.post(
    "/tsa",
    response_class=Response,
    summary="时间戳服务 RFC 3161 time-stamping (application/timestamp-query)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {TIMESTAMP_QUERY: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={
        200: {
            "description": "TimeStampResp (granted, or rejection with PKIFailureInfo)",
            "content": {TIMESTAMP_REPLY: {"schema": {"type": "string", "format": "binary"}}},
        },
        413: {"description": "Request body over 64 KiB", "content": {PROBLEM_JSON: {}}},
        415: {
            "description": "Content-Type is not application/timestamp-query",
            "content": {PROBLEM_JSON: {}},
        },
    },
)
async def timestamp(request: Request, ctx: ServiceContext = Depends(get_context)) -> Response:  # noqa: B008
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != TIMESTAMP_QUERY:
        return problem(
            415,
            "unsupported_media_type",
            f"请求类型必须为 {TIMESTAMP_QUERY}",
            f"Content-Type must be {TIMESTAMP_QUERY}",
        )
    query = await read_body(request, MAX_QUERY_BYTES)
    reply = await run_in_threadpool(_respond, ctx, query)
    return Response(reply, media_type=TIMESTAMP_REPLY, headers={"Cache-Control": "no-store"})
