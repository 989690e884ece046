"""Reading request bodies with a cap enforced while streaming, before anything is parsed."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from shared import fastjson
from shared.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType


async def read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    # ASCII digits, and a length checked before ``int`` (``"²".isdigit()`` is true; 5,000 digits raise)
    if declared and declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # so Starlette's form parser reads these bytes instead of the spent stream
    return body


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_json(request: Request, limit: int) -> Any:
    kind = media_type(request)
    if kind != "application/json" and not kind.endswith("+json"):
        raise UnsupportedMediaType(f"expected application/json, got {kind or 'no content type'}")
    body = await read_capped(request, limit)
    if not body.strip():
        raise BadRequest("request body is empty; expected a JSON object", code="invalid_json")
    try:
        return fastjson.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from exc
    except RecursionError as exc:  # hostile nesting: refuse it rather than crash the parser
        raise BadRequest("request body is nested too deeply", code="invalid_json") from exc


MAX_FORM_FIELDS = 20


async def read_form(
    request: Request, limit: int, *, file_field: str, max_files: int
) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    """A multipart form: (text fields, [(filename, bytes)] of the ``file_field`` parts)."""
    await read_capped(request, limit)
    try:
        form = await request.form(max_files=max_files, max_fields=MAX_FORM_FIELDS)
    except Exception as exc:  # Starlette raises its own parse errors (MultiPartException, HTTPException)
        raise BadRequest(f"malformed multipart body: {getattr(exc, 'detail', exc)}", code="invalid_multipart") from exc
    fields: dict[str, str] = {}
    uploads: list[tuple[str, bytes]] = []
    for key, value in form.multi_items():
        if isinstance(value, str):
            fields[key] = value
        elif key == file_field:
            uploads.append((value.filename or "", await value.read()))
        else:
            raise BadRequest(f"unexpected file field {key!r}; send images as {file_field!r}", code="invalid_multipart")
    return fields, uploads
