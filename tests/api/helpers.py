"""Small helpers for tests that talk HTTP to the real stack."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from celery import Celery

SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
VIRGINICA = [6.7, 3.0, 5.2, 2.3]


def submit(client: httpx.Client, model: str = "iris", body: Any = None, **headers: str) -> httpx.Response:
    return client.post(f"/v1/models/{model}/jobs", json={"input": SETOSA} if body is None else body, headers=headers)


def submit_and_wait(client: httpx.Client, **body: Any) -> httpx.Response:
    """One iris job (``body`` adds e.g. ``version``), answered when it finishes (``Prefer: wait``)."""
    return client.post("/v1/models/iris/jobs", json={"input": SETOSA, **body}, headers={"Prefer": "wait=30"})


@contextmanager
def steady_load(api_url: str, clients: int = 4) -> Iterator[list[dict[str, Any]]]:
    """Iris jobs submitted back to back by ``clients`` threads while the block runs (a reload, a
    publish); yields the list their finished jobs are appended to. The threads stop when it ends."""
    results: list[dict[str, Any]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=api_url, timeout=60) as c:
            while not stop.is_set():
                results.append(submit_and_wait(c).json())

    threads = [threading.Thread(target=load) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        yield results
    finally:
        stop.set()
        for t in threads:
            t.join()


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
