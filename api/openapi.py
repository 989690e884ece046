"""What ``/openapi.json`` says beyond what FastAPI infers: the error body, which error statuses each
route can answer, and the request-body models that routes read by hand (JSON or multipart).

Every error leaves the API as ``ErrorBody`` (see ``api.errors``), so the document declares that one
model for every error status, instead of FastAPI's ``HTTPValidationError`` for 422.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from shared.jobs import ExpiredJob

REF = "#/components/schemas/{model}"


class ErrorBody(BaseModel):
    """Every error answer (also 422: request validation is mapped to this shape, not FastAPI's)."""

    detail: str = Field(description="What went wrong, for a person.")
    code: str = Field(description="A stable machine-readable code, e.g. `model_not_found`, `rate_limited`.")


ERRORS: dict[int, str] = {
    400: "Malformed content: not JSON, a corrupt upload, a bad header value",
    401: "No API key, or an unknown one (`WWW-Authenticate: Bearer`)",
    403: "The API key lacks the scope this route needs (or the priority asked for is above its ceiling)",
    404: "Unknown model or job (another key's job is unknown too)",
    409: "Conflict: Idempotency-Key reused with another body, or the job is in the wrong state",
    410: "The job's data expired; the tombstone answers `status: expired`",
    413: "Request body over the configured limit",
    415: "Unsupported media type (JSON for a model that takes images, or the reverse)",
    422: "The request does not fit the schema or the model's input",
    429: "Rate limit exceeded, or the model's queue is full and this key holds more than its fair share of it; "
    "`Retry-After` says when to come back",
    503: "The model's queue is full, or Redis is unavailable; `Retry-After` says when to come back",
}

# What any route behind ``api.security.authorize`` can answer: the key check, the rate limit
# (counted in Redis, so a Redis outage is a 503 there already).
AUTHORIZED = (401, 403, 429, 503)
RETRY_AFTER = {"description": "Seconds to wait before retrying", "schema": {"type": "integer", "minimum": 1}}


def error_responses(*statuses: int, authorized: bool = True) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status it can really answer, with its body schema."""
    wanted = sorted({*statuses, *(AUTHORIZED if authorized else ())})
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ExpiredJob if status == 410 else ErrorBody, "description": ERRORS[status]}
        for status in wanted
    }
    for status in (429, 503):  # every 429 and 503 says when to come back (api.errors)
        if status in responses:
            responses[status]["headers"] = {"Retry-After": RETRY_AFTER}
    return responses


# Request bodies that routes parse themselves (one route takes JSON or multipart), registered here so
# their schemas (and the enums they nest) land in ``components/schemas`` where ``$ref``s resolve.
_BODY_MODELS: list[type[BaseModel]] = []


def body_ref(model: type[BaseModel]) -> dict[str, str]:
    """A ``$ref`` to ``model``'s component schema, added to the document by ``install_openapi``."""
    if model not in _BODY_MODELS:
        _BODY_MODELS.append(model)
    return {"$ref": REF.format(model=model.__name__)}


def install_openapi(app: FastAPI) -> None:
    """Generate the document once, as FastAPI does, then add the hand-parsed body models."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in _BODY_MODELS:
                body = model.model_json_schema(ref_template=REF, mode="validation")
                for name, definition in body.pop("$defs", {}).items():
                    components.setdefault(name, definition)
                components[model.__name__] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
