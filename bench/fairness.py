"""The fairness workload: two API keys of weight 1 on one stack, A and B.

1. idle: B sends single iris jobs one at a time (``Prefer: wait``), alone on the stack;
2. flood: A sends a big iris batch and, while it runs, B sends the same number of single jobs one
   at a time. Only B's jobs that finished while the batch was still unfinished count (the batch's
   progress is read after each of them); if the batch ends first, A sends another one (distinct
   rows), up to ``max_rounds`` batches;
3. priority: A sends a big ``low`` batch and right behind it a ``high`` single job.

What is compared is ``metrics.queue_ms`` of the finished jobs (creation to start, the server's own
clock): B's p50 during the flood against its idle p50 (the target: within 2x), and the
high job's wait against the batch's mean forward pass per chunk (``predict_ms / chunks``). "Starts
within one forward pass" is judged as: it waits at most B's idle p50 plus one such pass (a lone job
on an idle stack also waits a few ms: Redis round trips, the claim, a worker thread). End-to-end
latencies, seen by the client, are reported next to them.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from api.security import Scope, generate_key
from bench.data import Pool, iris_rows
from bench.http import Client, ClientError
from bench.load import epoch
from bench.stats import Json, percentile, summarize

JSON = {"content-type": "application/json"}
UNFINISHED = ("queued", "running")


@dataclass(frozen=True)
class FairnessSizes:
    jobs: int = 100  # B's single jobs, idle and again during the flood
    batch_rows: int = 100_000  # each of A's batches
    max_rounds: int = 10  # flood batches at most, until B has ``jobs`` jobs finished during one
    chunk_rows: int = 5_000  # the stack's MLQUEUE_BATCH_CHUNK_ROWS (mean forward pass per chunk)
    warm: int = 10  # B's untimed jobs before the idle phase
    gap_s: float = 0.02  # idle: silence between B's jobs, so each finds the stack idle
    high_jobs: int = 10  # A's high jobs over its low batch, one after another while it runs


FULL = FairnessSizes()
QUICK = FairnessSizes(jobs=30, batch_rows=20_000, max_rounds=3)
TINY = FairnessSizes(jobs=5, batch_rows=5_000, max_rounds=2, chunk_rows=500, warm=2, high_jobs=2)


class Meter(Protocol):
    def start(self) -> None: ...

    def stop(self) -> dict[str, float]: ...


def make_keys() -> tuple[dict[str, str], str]:
    """Keys A and B (weight 1 each): their bearer tokens and the ``MLQUEUE_API_KEYS`` value."""
    tokens, entries = {}, []
    for name in ("A", "B"):
        token, entry = generate_key(f"bench{name}", [Scope.SUBMIT, Scope.READ], {"weight": "1"})
        tokens[name] = token
        entries.append(entry)
    return tokens, ",".join(entries)


class _Key:
    """One API key's requests over a shared keep-alive client."""

    def __init__(self, http: Client, token: str) -> None:
        self.http = http
        self.auth = {"authorization": f"Bearer {token}"}

    async def job(self, row: Sequence[float], wait_s: int | None = 30, priority: str | None = None) -> Json:
        body: Json = {"input": list(row)}
        if priority:
            body["priority"] = priority
        headers = {**JSON, **self.auth, **({"prefer": f"wait={wait_s}"} if wait_s else {})}
        r = await self.http.post("/v1/models/iris/jobs", content=json.dumps(body).encode(), headers=headers)
        if r.status_code not in (200, 202):
            raise ClientError(f"job: HTTP {r.status_code}: {r.text[:160]}")
        job: Json = r.json()
        return job

    async def batch(self, body: bytes) -> Json:
        r = await self.http.post("/v1/models/iris/batches", content=body, headers={**JSON, **self.auth})
        if r.status_code != 202:
            raise ClientError(f"batch: HTTP {r.status_code}: {r.text[:160]}")
        batch: Json = r.json()
        return batch

    async def get(self, job_id: str) -> Json:
        job: Json = (await self.http.get(f"/v1/jobs/{job_id}", headers=self.auth)).json()
        return job

    async def finished(self, job_id: str, max_s: float, poll_s: float = 0.05) -> Json:
        deadline = time.perf_counter() + max_s
        job = await self.get(job_id)
        while job["status"] in UNFINISHED:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"job {job_id} not finished after {max_s:.0f}s: {job.get('progress')}")
            await asyncio.sleep(poll_s)
            job = await self.get(job_id)
        return job


def batch_body(rows: Sequence[Sequence[float]], priority: str | None = None) -> bytes:
    return json.dumps({"inputs": list(rows), **({"priority": priority} if priority else {})}).encode()


def _done_fraction(batch: Json) -> float:
    progress = batch.get("progress") or {}
    return float(progress.get("done", 0)) / max(float(progress.get("total", 1)), 1.0)


class _Jobs:
    """B's finished jobs of one phase: latency (client), queue_ms (server), errors."""

    def __init__(self) -> None:
        self.latencies_s: list[float] = []
        self.queue_ms: list[float] = []
        self.errors: list[str] = []
        self.started = time.perf_counter()

    async def one(self, key: _Key, row: Sequence[float]) -> bool:
        t0 = time.perf_counter()
        try:
            job = await key.job(row)
        except (ClientError, TimeoutError, OSError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            return False
        if job.get("status") != "succeeded":
            self.errors.append(f"job {job.get('status')}: {job.get('error')}"[:200])
            return False
        self.latencies_s.append(time.perf_counter() - t0)
        self.queue_ms.append(job["metrics"]["queue_ms"])
        return True

    def summary(self, **extra: object) -> Json:
        summary = summarize(
            self.latencies_s,
            time.perf_counter() - self.started,
            errors=len(self.errors),
            queue_p50_ms=_ms(percentile(self.queue_ms, 50)),
            queue_p95_ms=_ms(percentile(self.queue_ms, 95)),
            queue_max_ms=_ms(max(self.queue_ms, default=math.nan)),
            first_errors=self.errors[:3],
        )
        return {**summary, **extra}


def _ms(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 3)


async def idle_phase(b: _Key, rows: Pool[list[float]], sizes: FairnessSizes, meter: Meter | None) -> Json:
    for row in rows.take(sizes.warm):  # untimed: connections, the model's first calls
        await b.job(row)
    jobs = _Jobs()
    if meter:
        meter.start()
    for row in rows.take(sizes.jobs):
        await jobs.one(b, row)
        await asyncio.sleep(sizes.gap_s)
    cpu = meter.stop() if meter else None
    return jobs.summary(**({"cpu_s": cpu} if cpu else {}))


async def flood_phase(
    a: _Key, b: _Key, rows: Pool[list[float]], batches: Callable[[int], bytes], sizes: FairnessSizes
) -> Json:
    jobs = _Jobs()
    progress: list[float] = []  # how far A's batch had got when each of B's counted jobs finished
    rounds: list[Json] = []
    after = 0  # B's jobs that finished after their batch had (not counted)
    while len(jobs.queue_ms) < sizes.jobs and len(rounds) < sizes.max_rounds:
        body = batches(len(rounds))
        t0 = time.perf_counter()
        batch = await a.batch(body)
        submitted = time.perf_counter()
        during = _Jobs()
        state = batch
        while len(jobs.queue_ms) + len(during.queue_ms) < sizes.jobs:
            ok = await during.one(b, rows.take(1)[0])
            state = await a.get(batch["id"])
            if state["status"] not in UNFINISHED:
                after += ok  # it may have run after the last chunk: not a job of the flood
                break
            if ok:
                jobs.latencies_s.append(during.latencies_s[-1])
                jobs.queue_ms.append(during.queue_ms[-1])
                progress.append(_done_fraction(state))
        jobs.errors += during.errors
        done = await a.finished(batch["id"], 600)
        rounds.append(
            {
                "status": done["status"],
                "submit_s": round(submitted - t0, 3),
                "total_ms": (done.get("metrics") or {}).get("total_ms"),
                "client_s": round(time.perf_counter() - t0, 3),
            }
        )
    pct = [100 * p for p in progress]
    return jobs.summary(
        rounds=rounds,
        batch_rows=sizes.batch_rows,
        finished_after_batch=after,
        batch_done_pct={"min": _ms(min(pct, default=math.nan)), "p50": _ms(percentile(pct, 50))}
        | {"max": _ms(max(pct, default=math.nan))},
    )


async def priority_phase(a: _Key, rows: Sequence[Sequence[float]], body: bytes, sizes: FairnessSizes) -> Json:
    """A's low batch, then A's high jobs one after another while it runs (each one's wait is one
    sample; the first one's place in line is the one printed)."""
    batch = await a.batch(body)
    highs, positions, at_first = [], [], None
    for row in rows[: sizes.high_jobs]:
        high = await a.job(row, wait_s=None, priority="high")
        positions.append((high.get("queue") or {}).get("position"))
        highs.append(await a.finished(high["id"], 120, poll_s=0.01))
        progress = await a.get(batch["id"])
        at_first = at_first or progress
        if progress["status"] not in UNFINISHED:
            break
    batch = await a.finished(batch["id"], 600)
    metrics = batch.get("metrics") or {}
    chunks = math.ceil(sizes.batch_rows / sizes.chunk_rows)
    chunk_ms = metrics["predict_ms"] / chunks if metrics.get("predict_ms") is not None else None
    batch_done = epoch(batch.get("completed_at"))
    done = [epoch(h.get("completed_at")) for h in highs]
    first_done = done[0] if done and None not in done else None
    waits: list[float] = [w for h in highs if (w := (h.get("metrics") or {}).get("queue_ms")) is not None]
    queue_ms = _ms(percentile(waits, 50)) if waits else None
    return {
        "status": "succeeded" if all(h["status"] == "succeeded" for h in highs) else "failed",
        "high_jobs": len(highs),
        "position_at_submit": positions[0] if positions else None,
        "positions": positions,
        "queue_ms": queue_ms,  # the p50 of the high jobs' waits
        "queue_max_ms": max(waits, default=None),
        "total_ms": (highs[0].get("metrics") or {}).get("total_ms") if highs else None,
        "finished_before_batch": None if batch_done is None or first_done is None else first_done < batch_done,
        "batch_done_pct_when_high_finished": round(100 * _done_fraction(at_first or batch), 1),
        "batch_status": batch["status"],
        "batch_chunks": chunks,
        "batch_predict_ms": metrics.get("predict_ms"),
        "batch_total_ms": metrics.get("total_ms"),
        "chunk_predict_ms": None if chunk_ms is None else round(chunk_ms, 3),
        "queue_vs_chunk": None if not chunk_ms or queue_ms is None else round(queue_ms / chunk_ms, 3),
    }


async def run(url: str, tokens: dict[str, str], sizes: FairnessSizes = FULL, meter: Meter | None = None) -> Json:
    """The three phases against a stack started with ``make_keys()``'s ``MLQUEUE_API_KEYS``."""
    # B's rows: the idle phase, the flood's (up to one uncounted job per batch, and errors), the high job
    count = sizes.warm + 3 * sizes.jobs + sizes.max_rounds + sizes.high_jobs
    singles = Pool(iris_rows(count, seed=6), "fairness single rows")
    bodies: dict[int, bytes] = {}  # one batch of distinct rows per seed, built before its clock starts

    def batches(k: int) -> bytes:
        if k not in bodies:
            bodies.clear()  # at most one 100k-row body held at a time
            bodies[k] = batch_body(iris_rows(sizes.batch_rows, seed=20 + k))
        return bodies[k]

    async with Client(url, 2, timeout_s=120) as http:
        a, b = _Key(http, tokens["A"]), _Key(http, tokens["B"])
        idle = await idle_phase(b, singles, sizes, meter)
        batches(0)  # the first flood's body, before its clock starts
        flood = await flood_phase(a, b, singles, batches, sizes)
        low = batch_body(iris_rows(sizes.batch_rows, seed=19), "low")
        priority = await priority_phase(a, singles.take(sizes.high_jobs), low, sizes)
    ratio = None
    if idle["queue_p50_ms"] and flood["queue_p50_ms"] is not None:
        ratio = round(flood["queue_p50_ms"] / idle["queue_p50_ms"], 3)
    return {"sizes": asdict(sizes), "idle": idle, "flood": flood, "priority": priority, "flood_vs_idle_p50": ratio}


def target_values(result: Json | None) -> Json:
    """The numbers bench.targets compares (None when the workload did not run)."""
    result = result or {}
    idle, flood, prio = result.get("idle") or {}, result.get("flood") or {}, result.get("priority") or {}
    idle_p50, chunk = idle.get("queue_p50_ms"), prio.get("chunk_predict_ms")
    return {
        "fairness_idle_queue_p50_ms": idle_p50,
        "fairness_flood_queue_p50_ms": flood.get("queue_p50_ms"),
        "priority_high_queue_ms": prio.get("queue_ms"),
        "priority_high_bound_ms": None if idle_p50 is None or chunk is None else idle_p50 + chunk,
    }


def _f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def report_lines(result: Json) -> list[str]:
    """The waits, printed under the table: B idle vs during the flood, and the high job."""
    s, idle, flood, prio = result["sizes"], result["idle"], result["flood"], result["priority"]
    rounds = flood.get("rounds") or []
    totals = ", ".join(_f(r["total_ms"], 0) for r in rounds)
    done = flood.get("batch_done_pct") or {}
    bound = target_values(result)["priority_high_bound_ms"]

    def waits(r: Json) -> str:
        return (
            f"queue p50 {_f(r['queue_p50_ms'])} ms, p95 {_f(r['queue_p95_ms'])} ms, max {_f(r['queue_max_ms'])} ms"
            f" | latency p50 {_f(r['p50_ms'])} ms, p95 {_f(r['p95_ms'])} ms | {r['count']} jobs, {r['errors']} err"
        )

    return [
        "",
        "fairness and priority: keys A and B, weight 1 each; queue = job created -> started",
        "-" * 124,
        f"key B alone, single jobs one at a time:               {waits(idle)}",
        f"key B while key A's {s['batch_rows']:,}-row batch runs:       {waits(flood)}",
        f"    A's batches: {len(rounds)}, total ms each {totals or '-'}; batch done when B's jobs finished: "
        f"min {_f(done.get('min'), 0)}%, p50 {_f(done.get('p50'), 0)}%, max {_f(done.get('max'), 0)}%"
        f" ({flood.get('finished_after_batch', 0)} of B's jobs ended after their batch: not counted)",
        f"    B's p50 queue wait, flood / idle: {_f(result.get('flood_vs_idle_p50'))}x (target <= 2x)",
        f"{prio.get('high_jobs', 1)} high jobs from A over its queued {s['batch_rows']:,}-row low batch: queue p50 "
        f"{_f(prio['queue_ms'])} ms, max {_f(prio.get('queue_max_ms'))} ms (positions at submit "
        f"{prio.get('positions', [prio['position_at_submit']])}); the first finished before the batch: "
        f"{prio['finished_before_batch']} (batch {_f(prio['batch_done_pct_when_high_finished'], 0)}% done)",
        f"    one chunk's forward pass {_f(prio['chunk_predict_ms'])} ms (batch predict_ms / {prio['batch_chunks']} "
        f"chunks): the wait is {_f(prio['queue_vs_chunk'])}x it; B's idle p50 + one pass: {_f(bound)} ms",
    ]
