"""Sending one request, with retries: 429 (after ``Retry-After``), 503 and connection errors back off.

Every submission carries an ``Idempotency-Key`` made once per call (see ``_requests``), so a retry
of a POST whose answer was lost returns the job it made instead of making a second one.
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


@dataclass(frozen=True)
class Spec:
    """A request to make: enough to build it again for each attempt (bodies are bytes, not files)."""

    method: str
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 4
    backoff_s: float = 0.5
    max_delay_s: float = 60.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        advised = parse_retry_after(response.headers.get("retry-after")) if response is not None else None
        if advised is not None:
            return min(advised, self.max_delay_s)
        # Full jitter, so many clients refused at once do not come back at once.
        return random.uniform(0, min(self.max_delay_s, self.backoff_s * 2**attempt))


def _should_retry(policy: RetryPolicy, attempt: int, response: httpx.Response | None) -> bool:
    return attempt < policy.retries and (response is None or response.status_code in RETRY_STATUSES)


def send(http: httpx.Client, policy: RetryPolicy, spec: Spec, *, stream: bool = False) -> httpx.Response:
    attempt = 0
    while True:
        response: httpx.Response | None = None
        try:
            response = http.send(http.build_request(spec.method, spec.path, **spec.kwargs), stream=stream)
        except httpx.TransportError as exc:
            if not _should_retry(policy, attempt, None):
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
            if not _should_retry(policy, attempt, None):
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
