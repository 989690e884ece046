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

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every ``code`` mlqueue answers with or writes into a job: a public contract, never renamed.

    ``API_CODES`` are answered over HTTP (docs/api.md "Errors are always"), ``JOB_CODES`` are a failed
    job's ``error.code`` (docs/api.md "A model failure"); ``tests/shared/test_error_codes.py`` keeps both true.
    """

    # 400
    BAD_REQUEST = "bad_request"
    INVALID_JSON = "invalid_json"
    INVALID_MULTIPART = "invalid_multipart"
    INVALID_HEADER = "invalid_header"
    CORRUPT_IMAGE = "corrupt_image"
    EMPTY_IMAGE = "empty_image"
    # 401, 403
    UNAUTHORIZED = "unauthorized"
    INVALID_API_KEY = "invalid_api_key"
    INVALID_METRICS_TOKEN = "invalid_metrics_token"
    FORBIDDEN = "forbidden"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    PRIORITY_NOT_ALLOWED = "priority_not_allowed"
    # 404, 405
    NOT_FOUND = "not_found"
    JOB_NOT_FOUND = "job_not_found"
    MODEL_NOT_FOUND = "model_not_found"
    MODEL_VERSION_NOT_FOUND = "model_version_not_found"
    ALIAS_NOT_FOUND = "alias_not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    # 408
    BODY_TIMEOUT = "body_timeout"
    HEADER_TIMEOUT = "header_timeout"
    # 409
    CONFLICT = "conflict"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    IDEMPOTENCY_IN_FLIGHT = "idempotency_in_flight"
    JOB_NOT_CANCELABLE = "job_not_cancelable"
    JOB_NOT_RETRYABLE = "job_not_retryable"
    JOB_NOT_FINISHED = "job_not_finished"
    INPUT_UNAVAILABLE = "input_unavailable"
    NOT_A_BATCH = "not_a_batch"
    NO_WEBHOOK = "no_webhook"
    REDELIVER_FAILED = "redeliver_failed"
    ROUTING_UNREADABLE = "routing_unreadable"
    # 410
    EXPIRED = "expired"
    # 413
    PAYLOAD_TOO_LARGE = "payload_too_large"
    IMAGE_TOO_LARGE = "image_too_large"
    BATCH_TOO_LARGE = "batch_too_large"
    # 415
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UNSUPPORTED_IMAGE_FORMAT = "unsupported_image_format"
    IMAGE_REQUIRED = "image_required"
    JSON_REQUIRED = "json_required"
    # 422
    INVALID_INPUT = "invalid_input"
    INVALID_REQUEST = "invalid_request"
    INVALID_ALIAS = "invalid_alias"
    FILE_REQUIRED = "file_required"
    WEBHOOK_URL_REFUSED = "webhook_url_refused"
    WEBHOOKS_NOT_CONFIGURED = "webhooks_not_configured"
    # 429, 431
    RATE_LIMITED = "rate_limited"
    AUTH_RATE_LIMITED = "auth_rate_limited"
    FAIR_SHARE_EXCEEDED = "fair_share_exceeded"
    HEADERS_TOO_LARGE = "headers_too_large"
    # 500, 503, and any other HTTP error
    INTERNAL_ERROR = "internal_error"
    HTTP_ERROR = "http_error"
    UNAVAILABLE = "unavailable"
    QUEUE_FULL = "queue_full"
    STORE_UNAVAILABLE = "store_unavailable"
    MODEL_STORE_UNAVAILABLE = "model_store_unavailable"
    MODEL_UNAVAILABLE = "model_unavailable"
    MODEL_VERSION_UNAVAILABLE = "model_version_unavailable"
    # a failed job or batch item (and the worker's own)
    MODEL_ERROR = "model_error"
    INPUT_MISSING = "input_missing"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    POISON_JOB = "poison_job"
    ENQUEUE_FAILED = "enqueue_failed"
    ALL_ITEMS_FAILED = "all_items_failed"
    ARTIFACT_INVALID = "artifact_invalid"  # a model that fails to load; its jobs fail model_unavailable


# Codes only a worker writes, into a job record: never an HTTP answer.
_WORKER_ONLY = frozenset(
    {
        ErrorCode.MODEL_ERROR,
        ErrorCode.INPUT_MISSING,
        ErrorCode.DEADLINE_EXCEEDED,
        ErrorCode.POISON_JOB,
        ErrorCode.ENQUEUE_FAILED,
        ErrorCode.ALL_ITEMS_FAILED,
        ErrorCode.ARTIFACT_INVALID,
    }
)
API_CODES = frozenset(ErrorCode) - _WORKER_ONLY
JOB_CODES = (_WORKER_ONLY - {ErrorCode.ARTIFACT_INVALID}) | {ErrorCode.INVALID_INPUT, ErrorCode.MODEL_UNAVAILABLE}


class MlqueueError(Exception):
    status_code = 500
    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, detail: str, *, code: ErrorCode | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        if code is not None:
            self.code = code


class BadRequest(MlqueueError):
    status_code = 400
    code = ErrorCode.BAD_REQUEST


class Unauthorized(MlqueueError):
    status_code = 401
    code = ErrorCode.UNAUTHORIZED


class Forbidden(MlqueueError):
    status_code = 403
    code = ErrorCode.FORBIDDEN


class NotFound(MlqueueError):
    status_code = 404
    code = ErrorCode.NOT_FOUND


class Conflict(MlqueueError):
    status_code = 409
    code = ErrorCode.CONFLICT


class Gone(MlqueueError):
    status_code = 410
    code = ErrorCode.EXPIRED

    def __init__(self, detail: str, *, owner: str | None = None, code: ErrorCode | None = None) -> None:
        super().__init__(detail, code=code)
        self.owner = owner  # the API key that created the job, from its tombstone: only it sees the 410


class RequestTimeout(MlqueueError):
    status_code = 408
    code = ErrorCode.BODY_TIMEOUT


class PayloadTooLarge(MlqueueError):
    status_code = 413
    code = ErrorCode.PAYLOAD_TOO_LARGE


class UnsupportedMediaType(MlqueueError):
    status_code = 415
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


class InvalidInput(MlqueueError):
    status_code = 422
    code = ErrorCode.INVALID_INPUT


class TooManyRequests(MlqueueError):
    status_code = 429
    code = ErrorCode.RATE_LIMITED


class Unavailable(MlqueueError):
    status_code = 503
    code = ErrorCode.UNAVAILABLE
