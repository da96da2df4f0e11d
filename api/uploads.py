"""Reading request bodies and multipart forms under a size limit.

Every route that accepts a document reads it here, so a too-large upload is refused the same way
everywhere: by its declared Content-Length before anything is read, else as soon as the streamed
bytes pass the limit (a client may lie about or omit the length), always as ``InputTooLarge`` (413).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from core.errors import InputTooLarge, InvalidInput

# Room for the part headers and boundaries of a form around its file(s).
MULTIPART_OVERHEAD: Final = 64 * 1024
_CHUNK: Final = 1024 * 1024


def too_large(limit: int) -> InputTooLarge:
    return InputTooLarge(
        f"上传内容过大（上限 {limit} 字节）", f"Upload too large (limit {limit} bytes)", limit=limit
    )


def media_type(request: Request) -> str:
    """The request's media type without parameters, lower-cased ("" when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def limited_stream(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        yield chunk


async def read_body(request: Request, limit: int) -> bytes:
    """The raw request body, refused with 413 as soon as it passes ``limit`` bytes."""
    body = bytearray()
    async for chunk in limited_stream(request, limit):
        body += chunk
    return bytes(body)


async def read_part(upload: UploadFile, limit: int, already: int = 0) -> bytes:
    """One uploaded file's bytes; ``already`` counts earlier parts against the same ``limit``."""
    data = bytearray()
    while chunk := await upload.read(_CHUNK):
        data += chunk
        if already + len(data) > limit:
            raise too_large(limit)
    return bytes(data)


@asynccontextmanager
async def multipart_form(
    request: Request,
    limit: int,
    *,
    max_files: int,
    max_fields: int,
    max_part_size: int = 1024,
    overhead: int = MULTIPART_OVERHEAD,
) -> AsyncIterator[FormData]:
    """The parsed form (files spooled by Starlette), closed on exit; a malformed form is 400.

    ``limit`` bounds the files; ``overhead`` is what the form's headers and fields may add to it."""
    parser = MultiPartParser(
        request.headers,
        limited_stream(request, limit + overhead),
        max_files=max_files,
        max_fields=max_fields,
        max_part_size=max_part_size,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidInput("表单格式错误", f"Malformed multipart form: {exc.message}") from None
    try:
        yield form
    finally:
        await form.close()
