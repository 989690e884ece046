"""The delivery and retry options every mlqueue task states on its decorator."""

from __future__ import annotations

from typing import Any

import redis

# Retry only what may succeed next time (Redis blips), never bad input: a retried bad input fails
# the same way and only delays its error.
TRANSIENT = (redis.ConnectionError, redis.TimeoutError)


def task_options(max_retries: int) -> dict[str, Any]:
    """Acked after the run and requeued if the worker process dies; no Celery result (the job record
    is the result); a Redis blip retried with backoff (1 s doubling, at most 30 s), ``max_retries``
    times."""
    return {
        "acks_late": True,
        "reject_on_worker_lost": True,
        "ignore_result": True,
        "autoretry_for": TRANSIENT,
        "retry_backoff": 1,
        "retry_backoff_max": 30,
        "max_retries": max_retries,
    }
