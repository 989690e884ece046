"""Sending one request, with retries: 429 and 503 wait their ``Retry-After`` (else back off, as
connection errors do).

Both are the API's "back off and come back" answers: ``rate_limited`` and ``fair_share_exceeded``
(429), ``queue_full`` and ``model_unavailable`` (503). A ``Retry-After`` longer than the policy's
``max_delay_s`` is not slept through: the error is raised at once, with its ``retry_after``, for
the caller to decide (the API advises up to 600 s when a queue is full).

Every submission carries an ``Idempotency-Key`` made once per call (see ``_requests``), so a retry
of a POST whose answer was lost returns the job it made instead of making a second one. A request
without that protection (``resend_after_send=False``) is resent only when it surely never arrived.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from mlqueue.errors import ConnectionFailed, error_from_response, parse_retry_after

RETRY_STATUSES = frozenset({429, 503})
# Raised before a byte of the request left: resending cannot repeat it.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Spec:
    """A request to make: enough to build it again for each attempt (bodies are bytes, not files)."""

    method: str
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    resend_after_send: bool = True  # safe to resend when the answer was lost (reads, idempotent POSTs)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 4
    backoff_s: float = 0.5
    max_delay_s: float = 60.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        advised = advised_delay(response)
        if advised is not None:
            return advised
        # Full jitter, so many clients refused at once do not come back at once.
        return random.uniform(0, min(self.max_delay_s, self.backoff_s * 2**attempt))


def advised_delay(response: httpx.Response | None) -> float | None:
    return parse_retry_after(response.headers.get("retry-after")) if response is not None else None


def _should_retry(policy: RetryPolicy, attempt: int, response: httpx.Response | None) -> bool:
    if attempt >= policy.retries:
        return False
    if response is None:
        return True
    advised = advised_delay(response)
    return response.status_code in RETRY_STATUSES and (advised is None or advised <= policy.max_delay_s)


def _should_resend(policy: RetryPolicy, attempt: int, spec: Spec, exc: httpx.TransportError) -> bool:
    return _should_retry(policy, attempt, None) and (spec.resend_after_send or isinstance(exc, NOT_SENT))


def send(http: httpx.Client, policy: RetryPolicy, spec: Spec, *, stream: bool = False) -> httpx.Response:
    attempt = 0
    while True:
        response: httpx.Response | None = None
        try:
            response = http.send(http.build_request(spec.method, spec.path, **spec.kwargs), stream=stream)
        except httpx.TransportError as exc:
            if not _should_resend(policy, attempt, spec, exc):
                raise ConnectionFailed(f"{spec.method} {http.base_url.join(spec.path)}: {exc!r}") from exc
        else:
            if response.status_code < 400:
                return response
            response.read()
            response.close()
            if not _should_retry(policy, attempt, response):
                raise error_from_response(response)
        time.sleep(policy.delay(attempt, response))
        attempt += 1


async def asend(http: httpx.AsyncClient, policy: RetryPolicy, spec: Spec, *, stream: bool = False) -> httpx.Response:
    attempt = 0
    while True:
        response: httpx.Response | None = None
        try:
            response = await http.send(http.build_request(spec.method, spec.path, **spec.kwargs), stream=stream)
        except httpx.TransportError as exc:
            if not _should_resend(policy, attempt, spec, exc):
                raise ConnectionFailed(f"{spec.method} {http.base_url.join(spec.path)}: {exc!r}") from exc
        else:
            if response.status_code < 400:
                return response
            await response.aread()
            await response.aclose()
            if not _should_retry(policy, attempt, response):
                raise error_from_response(response)
        await asyncio.sleep(policy.delay(attempt, response))
        attempt += 1
