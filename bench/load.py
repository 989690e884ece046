"""The load generator: asyncio, HTTP/1.1 keep-alive connections (``bench.http``), a fixed number of
requests in flight (a closed loop: each of ``concurrency`` workers sends its next request when its
last one is answered). Request bodies are built before the clock starts. A workload is a picklable
``Spec`` so ``bench.clients`` can split it over several processes and ``merge`` their parts."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from bench.http import Client, ClientError, HttpxClient, Response
from bench.stats import Json, percentile, summarize

if TYPE_CHECKING:  # only --client httpx loads it
    import httpx

JSON = {"content-type": "application/json"}
HttpClient = Client | HttpxClient
CLIENTS: dict[str, type[HttpClient]] = {"raw": Client, "httpx": HttpxClient}


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


async def closed_loop(call: Callable[[int], Awaitable[None]], n: int, concurrency: int, max_s: float) -> Json:
    """Run ``call(i)`` for i in 0..n-1 with ``concurrency`` in flight, stopping early after ``max_s``."""
    return merge([await closed_loop_part(call, n, concurrency, max_s)], n, concurrency)


async def closed_loop_part(call: Callable[[int], Awaitable[None]], n: int, concurrency: int, max_s: float) -> Json:
    """The closed loop's raw outcome (latencies in s, errors, its monotonic start and end, its CPU
    seconds): what one load-generator process sends back to be merged with the others'."""
    latencies: list[float] = []
    errors: list[str] = []
    next_index = 0
    started = time.perf_counter()  # CLOCK_MONOTONIC: one clock for every process of the machine
    deadline = started + max_s
    last_done = started

    async def worker() -> None:
        nonlocal next_index, last_done
        while next_index < n and time.perf_counter() < deadline:
            i = next_index
            next_index += 1
            await _timed(call, i, latencies, errors)
            last_done = time.perf_counter()

    cpu0 = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "latencies": latencies,
        "errors": len(errors),
        "first_errors": errors[:3],
        "started": started,
        "last_done": last_done,
        "sent": next_index,
        "requested": n,
        "cpu_s": time.process_time() - cpu0,
    }


async def _timed(call: Callable[[int], Awaitable[None]], i: int, latencies: list[float], errors: list[str]) -> None:
    """One request: its latency when it succeeds, else its error (not timed: a failure is no answer)."""
    t0 = time.perf_counter()
    try:
        await call(i)
    except (Failed, ClientError, TimeoutError, OSError) as exc:
        errors.append(f"{type(exc).__name__}: {exc}"[:200])
    else:
        latencies.append(time.perf_counter() - t0)


def merge(parts: Sequence[Json], n: int, concurrency: int) -> Json:
    """One workload's summary from the parts of every load-generator process: latencies pooled,
    counts and errors summed, the elapsed time from the first start to the last answer (one clock),
    the client's CPU summed, and the busiest client process's share of a core over the run."""
    latencies = [x for p in parts for x in p["latencies"]]
    elapsed = max(p["last_done"] for p in parts) - min(p["started"] for p in parts)
    cpu = [p["cpu_s"] for p in parts]
    busiest = max((c / max(p["last_done"] - p["started"], 1e-9) for c, p in zip(cpu, parts, strict=True)), default=0)
    return summarize(
        latencies,
        elapsed,
        errors=sum(p["errors"] for p in parts),
        concurrency=concurrency,
        requested=n,
        stopped_early=sum(p["sent"] for p in parts) < n,
        client_procs=len(parts),
        client_cpu_s=round(sum(cpu), 3),
        client_busiest_pct=round(100 * busiest, 1),
        first_errors=[e for p in parts for e in p["first_errors"]][:3],
    )


# --- what a workload sends: a picklable description, turned into a call in each client process ----


@dataclass(frozen=True)
class Spec:
    """One workload's requests: ``kind`` (mlqueue, naive, bento, get), the path, and a prebuilt body
    per job (``bodies[i]`` for job i: distinct inputs; ``cycle``: reuse them, the cache workload)."""

    kind: str
    path: str
    bodies: tuple[tuple[bytes, dict[str, str]], ...] = ()
    cycle: bool = False
    poll_s: float = 0.05  # naive: how often its clients ask for the result
    expect_cached: bool = False  # mlqueue: the answer must come from the result cache

    def __len__(self) -> int:
        return len(self.bodies)

    def split(self, sizes: Sequence[int]) -> list[Spec]:
        """Consecutive slices of the bodies, one per client process (``cycle``/bodiless: shared)."""
        if self.cycle or not self.bodies:
            return [self for _ in sizes]
        out, at = [], 0
        for size in sizes:
            out.append(replace(self, bodies=self.bodies[at : at + size]))
            at += size
        return out


def make_call(http: HttpClient, spec: Spec, timeline: Timeline | None = None) -> Callable[[int], Awaitable[None]]:
    bodies = spec.bodies

    def body(i: int) -> tuple[bytes, dict[str, str]]:
        return bodies[i % len(bodies)] if spec.cycle else bodies[i]  # IndexError: fewer bodies than jobs

    if spec.kind == "mlqueue":

        async def call(i: int) -> None:
            content, headers = body(i)
            sent = time.time()
            r = await http.post(spec.path, content=content, headers=headers)
            received = time.time()
            job = check_finished(r, spec.expect_cached)
            if timeline is not None:
                timeline.add(sent, received, job)

    elif spec.kind == "naive":

        async def call(i: int) -> None:
            content, headers = body(i)
            await naive_once(http, spec.path, content, headers, spec.poll_s)

    elif spec.kind in ("bento", "get"):

        async def call(i: int) -> None:
            if spec.kind == "get":
                r = await http.get(spec.path)
            else:
                content, headers = body(i)
                r = await http.post(spec.path, content=content, headers=headers)
            if r.status_code != 200:
                raise Failed(f"HTTP {r.status_code}: {r.text[:120]}")

    else:
        raise ValueError(f"unknown workload kind {spec.kind!r}")
    return call


# --- mlqueue ----------------------------------------------------------------------------------


class Timeline:
    """Where a finished job's time went, from the client's clock and the job's own timestamps (one
    machine, one clock): request → ``created_at`` (API: parse, validate, write), → ``started_at``
    (Redis, the Celery consumer, a task thread), → ``completed_at`` (model, batcher, final write),
    → response read (event back to the waiting request, response)."""

    SEGMENTS = ("api_in", "queue", "run", "back")

    def __init__(self) -> None:
        self.samples: list[tuple[float, ...]] = []

    def add(self, sent: float, received: float, job: Json) -> None:
        created, started, completed = (epoch(job.get(k)) for k in ("created_at", "started_at", "completed_at"))
        if created is not None and started is not None and completed is not None:
            self.samples.append((created - sent, started - created, completed - started, received - completed))

    def summary(self) -> Json:
        out: Json = {}
        for i, name in enumerate(self.SEGMENTS):
            values = [s[i] * 1000 for s in self.samples]
            out[name] = {"p50_ms": round(percentile(values, 50), 3), "p99_ms": round(percentile(values, 99), 3)}
        return out


def epoch(stamp: object) -> float | None:
    """A job's ISO timestamp (``created_at``, ...) as epoch seconds; None where it has none yet."""
    if not isinstance(stamp, str) or not stamp:
        return None
    return datetime.fromisoformat(stamp).timestamp()


def mlqueue_json(
    model: str, rows: Sequence[object], wait_s: int, expect_cached: bool = False, cycle: bool = False
) -> Spec:
    headers = {**JSON, "prefer": f"wait={wait_s}"}
    bodies = tuple((json.dumps({"input": row}).encode(), headers) for row in rows)
    return Spec("mlqueue", f"/v1/models/{model}/jobs", bodies, cycle=cycle, expect_cached=expect_cached)


def mlqueue_image(model: str, pngs: Sequence[bytes], wait_s: int) -> Spec:
    bodies = []
    for i, png in enumerate(pngs):
        body, headers = multipart("file", f"digit{i}.png", png)
        bodies.append((body, {**headers, "prefer": f"wait={wait_s}"}))
    return Spec("mlqueue", f"/v1/models/{model}/jobs", tuple(bodies))


def check_finished(r: Response | httpx.Response, expect_cached: bool) -> Json:
    if r.status_code != 200:
        raise Failed(f"HTTP {r.status_code}: {r.text[:120]}")
    job: Json = r.json()
    if job["status"] != "succeeded":
        raise Failed(f"job {job['status']}: {job.get('error')}")
    if expect_cached and not job.get("cached"):
        raise Failed("not answered from the cache")
    return job


async def mlqueue_batch(http: HttpClient, model: str, rows: Sequence[object], max_s: float) -> Json:
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


def get(path: str) -> Spec:
    return Spec("get", path)


# --- the naive tutorial service ------------------------------------------------------------------


def naive_iris(rows: Sequence[Sequence[float]]) -> Spec:
    return Spec("naive", "/predict/iris", tuple((json.dumps({"features": r}).encode(), JSON) for r in rows))


def naive_image(pngs: Sequence[bytes]) -> Spec:
    return Spec("naive", "/predict/digits", tuple(multipart("file", f"d{i}.png", p) for i, p in enumerate(pngs)))


async def naive_once(http: HttpClient, path: str, body: bytes, headers: dict[str, str], poll_s: float) -> None:
    """POST, then GET the task's state every ``poll_s`` until SUCCESS: what the tutorials' clients do."""
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


# --- BentoML ------------------------------------------------------------------------------------


def bento(pngs: Sequence[bytes]) -> Spec:
    return Spec("bento", "/classify", tuple(multipart("images", f"digit{i}.png", p) for i, p in enumerate(pngs)))


async def sequential(call: Callable[[int], Awaitable[None]], n: int, gap_s: float, max_s: float) -> Json:
    """One request at a time with ``gap_s`` of silence between them: every request finds the stack idle."""
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    for i in range(n):
        if time.perf_counter() - started > max_s:
            break
        await _timed(call, i, latencies, errors)
        await asyncio.sleep(gap_s)
    return summarize(
        latencies, sum(latencies), errors=len(errors), concurrency=1, gap_ms=gap_s * 1000, first_errors=errors[:3]
    )
