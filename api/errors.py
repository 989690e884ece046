"""Every error leaves the API as ``{"detail": ..., "code": ...}``, mapped in one place."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MasterDownError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from shared.errors import ErrorCode, Gone, MlqueueError

log = logging.getLogger(__name__)


def error_response(status: int, detail: str, code: ErrorCode, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=headers)


async def _mlqueue_error(request: Request, exc: MlqueueError) -> JSONResponse:
    if isinstance(exc, Gone):  # the tombstone: an old id is never mistaken for unknown or running
        job_id = request.path_params.get("job_id")
        return JSONResponse(
            {"id": job_id, "status": "expired", "detail": exc.detail, "code": exc.code}, status_code=exc.status_code
        )
    headers = exc.headers
    if exc.status_code == 503 and "Retry-After" not in headers:  # every 503 says when to come back
        headers = {**headers, "Retry-After": "1"}
    return error_response(exc.status_code, exc.detail, exc.code, headers or None)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "request"
    return error_response(422, f"{where}: {first.get('msg')}", ErrorCode.INVALID_REQUEST)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    # 400 from FastAPI itself is a body its model could not parse as JSON
    codes = {400: ErrorCode.INVALID_JSON, 404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
    return error_response(exc.status_code, str(exc.detail), codes.get(exc.status_code, ErrorCode.HTTP_ERROR), headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path: Starlette's own ``Allow`` names only the first
    route that matched the path (a path with POST and DELETE routes would say ``POST``)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"}) if hasattr(route, "matches") else (None, None)
        if match is not None and match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("redis.unavailable error=%s", exc)
    return error_response(
        503, "the job store is unavailable; retry later", ErrorCode.STORE_UNAVAILABLE, {"Retry-After": "1"}
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("request.failed")
    return error_response(500, "internal error", ErrorCode.INTERNAL_ERROR)


E = TypeVar("E", bound=Exception)


def _on(app: FastAPI, exc_type: type[E], handle: Callable[[Request, E], Awaitable[Response]]) -> None:
    """Register ``handle`` for ``exc_type``. Starlette types every handler as taking any exception
    (it calls each only with the class it was registered for): this keeps ours typed by theirs."""

    async def handler(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, exc_type):  # never: Starlette picked this handler by the class
            raise exc
        return await handle(request, exc)

    app.add_exception_handler(exc_type, handler)


def install_error_handlers(app: FastAPI) -> None:
    _on(app, MlqueueError, _mlqueue_error)
    _on(app, RequestValidationError, _validation_error)
    _on(app, HTTPException, _http_error)
    # A failover: the primary is gone (connection errors, Sentinel's MasterNotFoundError is one), a
    # demoted primary refuses writes (READONLY), a replica has lost its primary (MASTERDOWN).
    for exc_type in (RedisConnectionError, RedisTimeoutError, ReadOnlyError, MasterDownError, OperationalError):
        app.add_exception_handler(exc_type, _unavailable)
    app.add_exception_handler(Exception, _unexpected)
