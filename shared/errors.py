"""Exceptions of mlqueue, each carrying its HTTP status and a stable error code.

    MlqueueError
    ├── BadRequest            400  the content is malformed (not JSON, corrupt image)
    ├── Unauthorized          401  no or unknown API key
    ├── Forbidden             403  the key lacks the scope
    ├── NotFound              404  unknown model or job
    ├── Conflict              409  idempotency-key reuse, cancel of a finished job
    ├── RequestTimeout        408  the body did not arrive within its deadline
    ├── Gone                  410  the job's data expired
    ├── PayloadTooLarge       413
    ├── UnsupportedMediaType  415
    ├── InvalidInput          422  well-formed but does not fit the model's input schema
    ├── TooManyRequests       429  rate limit; ``Retry-After`` says when to come back
    └── Unavailable           503  Redis or the broker cannot be reached

The API maps them to ``{"detail": ..., "code": ...}`` in one handler; the worker turns
``InvalidInput`` and model errors into a ``failed`` job, never an HTTP 500.
"""

from __future__ import annotations


class MlqueueError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, detail: str, *, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        if code is not None:
            self.code = code


class BadRequest(MlqueueError):
    status_code = 400
    code = "bad_request"


class Unauthorized(MlqueueError):
    status_code = 401
    code = "unauthorized"


class Forbidden(MlqueueError):
    status_code = 403
    code = "forbidden"


class NotFound(MlqueueError):
    status_code = 404
    code = "not_found"


class Conflict(MlqueueError):
    status_code = 409
    code = "conflict"


class Gone(MlqueueError):
    status_code = 410
    code = "expired"

    def __init__(self, detail: str, *, owner: str | None = None, code: str | None = None) -> None:
        super().__init__(detail, code=code)
        self.owner = owner  # the API key that created the job, from its tombstone: only it sees the 410


class RequestTimeout(MlqueueError):
    status_code = 408
    code = "body_timeout"


class PayloadTooLarge(MlqueueError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(MlqueueError):
    status_code = 415
    code = "unsupported_media_type"


class InvalidInput(MlqueueError):
    status_code = 422
    code = "invalid_input"


class TooManyRequests(MlqueueError):
    status_code = 429
    code = "rate_limited"


class Unavailable(MlqueueError):
    status_code = 503
    code = "unavailable"
