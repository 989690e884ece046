"""Every error leaves the API as ``{"detail": ..., "code": ...}``, mapped in one place."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from shared.errors import Gone, MlqueueError

log = logging.getLogger(__name__)


def error_response(status: int, detail: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
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
    return error_response(422, f"{where}: {first.get('msg')}", "invalid_request")


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    # 400 from FastAPI itself is a body its model could not parse as JSON
    codes = {400: "invalid_json", 404: "not_found", 405: "method_not_allowed"}
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
    return error_response(exc.status_code, str(exc.detail), codes.get(exc.status_code, "http_error"), headers)


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
    return error_response(503, "the job store is unavailable; retry later", "store_unavailable", {"Retry-After": "1"})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("request.failed")
    return error_response(500, "internal error", "internal_error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MlqueueError, _mlqueue_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    for exc_type in (RedisConnectionError, RedisTimeoutError, OperationalError):
        app.add_exception_handler(exc_type, _unavailable)
    app.add_exception_handler(Exception, _unexpected)
