"""One exception hierarchy, mapped from the API's ``{"detail", "code"}`` bodies in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from mlqueue._types import JsonValue

if TYPE_CHECKING:
    from mlqueue.jobs import BaseJob


class MlqueueError(Exception):
    """Everything this package raises."""


class ConnectionFailed(MlqueueError):
    """The API could not be reached (after the retries)."""


class StreamTimeout(ConnectionFailed):
    """An event or result stream went silent for longer than its read timeout."""


class ApiError(MlqueueError):
    """The API answered with an error status; ``code`` is its machine-readable code."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}

    @property
    def retry_after(self) -> float | None:
        """Seconds the API asked us to wait (429, 503), if it said."""
        return parse_retry_after(self.headers.get("retry-after"))


class BadRequest(ApiError):
    """400: a malformed body or header (``invalid_json``, ``corrupt_image``, ``invalid_header``...)."""


class Unauthorized(ApiError):
    """401: no API key, or one the server does not know."""


class Forbidden(ApiError):
    """403: the key lacks the scope this call needs (``insufficient_scope``), or asked for a priority
    above its ceiling (``priority_not_allowed``)."""


class NotFound(ApiError):
    """404: no such job (or another key's), model, version or route."""


class Conflict(ApiError):
    """409: ``idempotency_conflict``, ``job_not_cancelable``, ``not_a_batch``, ``no_webhook``;
    ``job_not_retryable`` (only a failed or aborted job, or a batch with failed items, is retried)
    and ``input_unavailable`` (its inputs are no longer stored)."""


class Expired(NotFound):
    """410: the job existed but its data aged out."""


class PayloadTooLarge(ApiError):
    """413: body, image or batch over the server's limits."""


class UnsupportedMediaType(ApiError):
    """415: wrong content type or image format for this model."""


class InvalidInput(ApiError):
    """422: the input does not fit the model (``invalid_input``) or the request schema."""


class RateLimited(ApiError):
    """429: past the rate limit (``rate_limited``), or more than this key's fair share of a full
    queue (``fair_share_exceeded``); still so after the retries, or asked to wait longer than they
    would (``retry_after``)."""


class Unavailable(ApiError):
    """503: Redis, the broker or the model's workers are down, or the queue is full for everyone
    (``queue_full``); still so after the retries, or asked to wait longer than they would
    (``retry_after``)."""


class JobFailed(MlqueueError):
    """The job ended ``failed``, ``canceled`` or ``aborted``; ``job`` is the finished job."""

    def __init__(self, job: BaseJob) -> None:
        error = job.error or {}
        reason = f"{error.get('code')}: {error.get('message')}" if error else job.status
        super().__init__(f"job {job.id} {job.status} ({reason})")
        self.job = job
        self.code: str = error.get("code", job.status)


class WaitTimeout(MlqueueError):
    """The job was still queued or running when the wait ran out; ``job`` is its last state."""

    def __init__(self, job: BaseJob, timeout: float) -> None:
        super().__init__(f"job {job.id} still {job.status} after {timeout:g}s")
        self.job = job


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Expired,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidInput,
    429: RateLimited,
    503: Unavailable,
}


def parse_retry_after(value: str | None) -> float | None:
    # The API sends delta-seconds only; an HTTP date from some proxy is treated as "no advice".
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> ApiError:
    """The typed error for an error answer; a body that is not ours (a proxy's page) still maps."""
    code, detail = f"http_{response.status_code}", response.reason_phrase or "error"
    try:
        body: JsonValue = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("code") or code)
        detail = str(body.get("detail") or detail)
    cls = _BY_STATUS.get(response.status_code, ApiError)
    return cls(response.status_code, code, detail, dict(response.headers))
