"""Reading request bodies with a cap enforced while streaming, before anything is parsed."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from fastapi import Request

from api.deps import state_of
from shared import fastjson
from shared.errors import BadRequest, ErrorCode, PayloadTooLarge, RequestTimeout, UnsupportedMediaType
from shared.fastjson import JsonValue


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes, read within the body deadline: a client trickling
    its body a byte at a time would otherwise hold a connection and its buffer for ever (408)."""
    declared = request.headers.get("content-length")
    # ASCII digits, and a length checked before ``int`` (``"²".isdigit()`` is true; 5,000 digits raise)
    if declared and declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    timeout_s = state_of(request).settings.body_read_timeout_s
    with anyio.move_on_after(timeout_s) as deadline:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    if deadline.cancelled_caught:
        # The rest of the body is still on its way: close the connection rather than parse it as a request.
        raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s", headers={"Connection": "close"})
    body = b"".join(chunks)
    keep_body(request, body)
    return body


def keep_body(request: Request, body: bytes) -> None:
    """Hand ``body``, read from the spent stream, back to ``request``, so that ``request.form()``
    parses these bytes and ``request.body()`` (the submission's fingerprint) returns them.

    Starlette (1.x) has no public way to do this: ``stream()``, ``body()`` and ``form()`` look for
    the private ``_body`` attribute that ``body()`` caches (encode/starlette#495 and the closed
    #1519 discuss caching the body; none landed a public setter). Setting it is the one override of
    Starlette internals here; ``tests/api/test_body.py`` fails if Starlette stops reading it."""
    request._body = body


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_json(request: Request, limit: int) -> JsonValue:
    kind = media_type(request)
    if kind != "application/json" and not kind.endswith("+json"):
        raise UnsupportedMediaType(f"expected application/json, got {kind or 'no content type'}")
    body = await read_capped(request, limit)
    if not body.strip():
        raise BadRequest("request body is empty; expected a JSON object", code=ErrorCode.INVALID_JSON)
    try:
        return fastjson.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code=ErrorCode.INVALID_JSON) from exc
    except RecursionError as exc:  # hostile nesting: refuse it rather than crash the parser
        raise BadRequest("request body is nested too deeply", code=ErrorCode.INVALID_JSON) from exc


MAX_FORM_FIELDS = 20


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name the client gave it, and its bytes as sent."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class Form:
    """A multipart form: its text fields, and the files of its ``file_field`` parts in order."""

    fields: dict[str, str]
    uploads: list[Upload]


async def read_form(request: Request, limit: int, *, file_field: str, max_files: int) -> Form:
    """A multipart form, at most ``max_files`` files (only in ``file_field``)."""
    await read_capped(request, limit)
    try:
        form = await request.form(max_files=max_files, max_fields=MAX_FORM_FIELDS)
    except Exception as exc:  # Starlette raises its own parse errors (MultiPartException, HTTPException)
        raise BadRequest(
            f"malformed multipart body: {getattr(exc, 'detail', exc)}", code=ErrorCode.INVALID_MULTIPART
        ) from exc
    fields: dict[str, str] = {}
    uploads: list[Upload] = []
    for key, value in form.multi_items():
        if isinstance(value, str):
            fields[key] = value
        elif key == file_field:
            uploads.append(Upload(value.filename or "", await value.read()))
        else:
            raise BadRequest(
                f"unexpected file field {key!r}; send images as {file_field!r}", code=ErrorCode.INVALID_MULTIPART
            )
    return Form(fields, uploads)
