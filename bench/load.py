"""The load generator: one asyncio process, HTTP/1.1 keep-alive connections (``bench.http``), a fixed
number of requests in flight (a closed loop: each of ``concurrency`` workers sends its next request
when its last one is answered). Request bodies are built before the clock starts."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from bench.http import Client, ClientError, HttpxClient
from bench.stats import percentile, summarize

JSON = {"content-type": "application/json"}
CLIENTS = {"raw": Client, "httpx": HttpxClient}
HttpClient = Client | HttpxClient


def client(base_url: str, concurrency: int, kind: str = "raw", timeout_s: float = 60) -> HttpClient:
    """A client with as many keep-alive connections as requests in flight."""
    return CLIENTS[kind](base_url, concurrency, timeout_s)


def multipart(field: str, filename: str, data: bytes, content_type: str = "image/png") -> tuple[bytes, dict[str, str]]:
    """A prebuilt ``multipart/form-data`` body with one file (built once, outside the timed loop)."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


class Failed(Exception):
    """A request that did not produce the expected result (counted as an error, not timed)."""


async def closed_loop(call: Callable[[int], Awaitable[None]], n: int, concurrency: int, max_s: float) -> dict[str, Any]:
    """Run ``call(i)`` for i in 0..n-1 with ``concurrency`` in flight, stopping early after ``max_s``."""
    latencies: list[float] = []
    errors: list[str] = []
    next_index = 0
    started = time.perf_counter()
    deadline = started + max_s
    last_done = started

    async def worker() -> None:
        nonlocal next_index, last_done
        while next_index < n and time.perf_counter() < deadline:
            i = next_index
            next_index += 1
            t0 = time.perf_counter()
            try:
                await call(i)
            except (Failed, ClientError, TimeoutError, OSError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
            else:
                latencies.append(time.perf_counter() - t0)
            last_done = time.perf_counter()

    cpu0 = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = last_done - started
    return summarize(
        latencies,
        elapsed,
        errors=len(errors),
        concurrency=concurrency,
        requested=n,
        stopped_early=next_index < n,
        client_cpu_s=round(time.process_time() - cpu0, 2),
        first_errors=errors[:3],
    )


# --- mlqueue ----------------------------------------------------------------------------------


class Timeline:
    """Where a finished job's time went, from the client's clock and the job's own timestamps (one
    machine, one clock): request → ``created_at`` (API: parse, validate, write), → ``started_at``
    (Redis, the Celery consumer, a task thread), → ``completed_at`` (model, batcher, final write),
    → response read (event back to the waiting request, response)."""

    SEGMENTS = ("api_in", "queue", "run", "back")

    def __init__(self) -> None:
        self.samples: list[tuple[float, ...]] = []

    def add(self, sent: float, received: float, job: dict[str, Any]) -> None:
        created, started, completed = (_epoch(job.get(k)) for k in ("created_at", "started_at", "completed_at"))
        if None not in (created, started, completed):
            self.samples.append((created - sent, started - created, completed - started, received - completed))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, name in enumerate(self.SEGMENTS):
            values = [s[i] * 1000 for s in self.samples]
            out[name] = {"p50_ms": round(percentile(values, 50), 3), "p99_ms": round(percentile(values, 99), 3)}
        return out


def _epoch(stamp: Any) -> float | None:
    if not isinstance(stamp, str):
        return None
    return datetime.fromisoformat(stamp).timestamp()


def mlqueue_json_job(
    http: HttpClient,
    model: str,
    rows: Sequence[Any],
    wait_s: int,
    expect_cached: bool = False,
    timeline: Timeline | None = None,
):
    bodies = [json.dumps({"input": row}).encode() for row in rows]
    headers = {**JSON, "prefer": f"wait={wait_s}"}

    async def call(i: int) -> None:
        sent = time.time()
        r = await http.post(f"/v1/models/{model}/jobs", content=bodies[i % len(bodies)], headers=headers)
        received = time.time()
        job = check_finished(r, expect_cached)
        if timeline is not None:
            timeline.add(sent, received, job)

    return call


def mlqueue_image_job(
    http: HttpClient, model: str, pngs: Sequence[bytes], wait_s: int, timeline: Timeline | None = None
):
    bodies = [multipart("file", f"digit{i}.png", png) for i, png in enumerate(pngs)]

    async def call(i: int) -> None:
        body, headers = bodies[i % len(bodies)]
        sent = time.time()
        r = await http.post(f"/v1/models/{model}/jobs", content=body, headers={**headers, "prefer": f"wait={wait_s}"})
        received = time.time()
        job = check_finished(r, False)
        if timeline is not None:
            timeline.add(sent, received, job)

    return call


def check_finished(r: Any, expect_cached: bool) -> dict[str, Any]:
    if r.status_code != 200:
        raise Failed(f"HTTP {r.status_code}: {r.text[:120]}")
    job = r.json()
    if job["status"] != "succeeded":
        raise Failed(f"job {job['status']}: {job.get('error')}")
    if expect_cached and not job.get("cached"):
        raise Failed("not answered from the cache")
    return job


async def mlqueue_batch(http: HttpClient, model: str, rows: Sequence[Any], max_s: float) -> dict[str, Any]:
    """Submit one batch, poll the job every 50 ms until it finishes, then stream every result back as
    NDJSON. Rows/s = rows / (submit → last result line read)."""
    body = json.dumps({"inputs": list(rows)}).encode()
    cpu0 = time.process_time()
    started = time.perf_counter()
    r = await http.post(f"/v1/models/{model}/batches", content=body, headers=JSON)
    if r.status_code != 202:
        raise Failed(f"batch submit: HTTP {r.status_code}: {r.text[:200]}")
    submitted = time.perf_counter()
    job = r.json()
    polls = 0
    while job["status"] in ("queued", "running"):
        if time.perf_counter() - started > max_s:
            raise Failed(f"batch not finished after {max_s}s: {job['progress']}")
        await asyncio.sleep(0.05)
        polls += 1
        job = (await http.get(f"/v1/jobs/{job['id']}")).json()
    finished = time.perf_counter()
    lines = succeeded = 0
    async for line in http.stream_lines(f"/v1/jobs/{job['id']}/results", headers={"accept": "application/x-ndjson"}):
        if line:
            lines += 1
            succeeded += b'"succeeded"' in line
    done = time.perf_counter()
    total = done - started
    return {
        "rows": len(rows),
        "status": job["status"],
        "progress": job["progress"],
        "result_lines": lines,
        "succeeded_lines": succeeded,
        "body_mb": round(len(body) / 2**20, 1),
        "submit_s": round(submitted - started, 3),
        "run_s": round(finished - submitted, 3),
        "stream_s": round(done - finished, 3),
        "elapsed_s": round(total, 3),
        "polls": polls,
        "job_metrics": job.get("metrics"),
        "rate": round(len(rows) / total, 1),
        "client_cpu_s": round(time.process_time() - cpu0, 2),
    }


def get_path(http: HttpClient, path: str):
    async def call(i: int) -> None:
        r = await http.get(path)
        if r.status_code != 200:
            raise Failed(f"HTTP {r.status_code}: {r.text[:120]}")

    return call


# --- the naive tutorial service ------------------------------------------------------------------


def naive_job(http: HttpClient, path: str, bodies: Sequence[tuple[bytes, dict[str, str]]], poll_s: float):
    """POST, then GET the task's state every ``poll_s`` until SUCCESS: what the tutorials' clients do."""

    async def call(i: int) -> None:
        body, headers = bodies[i % len(bodies)]
        r = await http.post(path, content=body, headers=headers)
        if r.status_code != 200:
            raise Failed(f"HTTP {r.status_code}: {r.text[:120]}")
        task_id = r.json()["task_id"]
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            await asyncio.sleep(poll_s)
            state = (await http.get(f"/result/{task_id}")).json()
            if state["status"] == "SUCCESS":
                return
            if state["status"] == "FAILURE":
                raise Failed(f"task failed: {state}")
        raise Failed("task not finished in 60 s")

    return call


# --- BentoML ------------------------------------------------------------------------------------


def bento_job(http: HttpClient, pngs: Sequence[bytes]):
    bodies = [multipart("images", f"digit{i}.png", png) for i, png in enumerate(pngs)]

    async def call(i: int) -> None:
        body, headers = bodies[i % len(bodies)]
        r = await http.post("/classify", content=body, headers=headers)
        if r.status_code != 200:
            raise Failed(f"HTTP {r.status_code}: {r.text[:120]}")

    return call


async def sequential(call: Callable[[int], Awaitable[None]], n: int, gap_s: float, max_s: float) -> dict[str, Any]:
    """One request at a time with ``gap_s`` of silence between them: every request finds the stack idle."""
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    for i in range(n):
        if time.perf_counter() - started > max_s:
            break
        t0 = time.perf_counter()
        try:
            await call(i)
        except (Failed, ClientError, TimeoutError, OSError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
        else:
            latencies.append(time.perf_counter() - t0)
        await asyncio.sleep(gap_s)
    return summarize(
        latencies, sum(latencies), errors=len(errors), concurrency=1, gap_ms=gap_s * 1000, first_errors=errors[:3]
    )
