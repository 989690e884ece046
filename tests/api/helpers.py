"""Small helpers for tests that talk HTTP to the real stack."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any

import httpx
from celery import Celery

SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
VIRGINICA = [6.7, 3.0, 5.2, 2.3]


def submit(client: httpx.Client, model: str = "iris", body: Any = None, **headers: str) -> httpx.Response:
    return client.post(f"/v1/models/{model}/jobs", json={"input": SETOSA} if body is None else body, headers=headers)


def poll_until_terminal(client: httpx.Client, job_id: str, timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout_s}s")


@contextmanager
def consumption_paused(redis_url: str, worker: str, queue: str = "cpu"):
    """Stop a worker taking messages from ``queue`` (Celery remote control), so jobs stay queued."""
    app = Celery(broker=redis_url)
    try:
        app.control.cancel_consumer(queue, destination=[worker], reply=True, timeout=5)
        yield
    finally:
        app.control.add_consumer(queue, destination=[worker], reply=True, timeout=5)
        app.close()
