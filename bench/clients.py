"""The load generator on several processes: one closed loop split over ``procs`` spawned processes.

Why: one asyncio process parsing every answer can itself become the bottleneck at concurrency 64 on
a small machine, and then the numbers describe the client. Each process runs ``bench.load``'s
closed loop with the raw-socket client on its share of the concurrency and of the jobs (its own
slice of the prebuilt bodies: still no input sent twice), all start together, and ``load.merge``
pools their parts. Each part carries its process's CPU seconds: ``client_busiest_pct`` near 100
means a client process saturated a core (the run should use more of them).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue as queue_module
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

from bench import load
from bench.stats import Json

START_TIMEOUT_S = 120  # spawning: a fresh interpreter imports the load generator


def shares(total: int, procs: int) -> list[int]:
    """``total`` split over ``procs`` as evenly as integers allow (the first ones get the remainder)."""
    return [total // procs + (k < total % procs) for k in range(procs)]


def plan(n: int, concurrency: int, procs: int) -> list[tuple[int, int]]:
    """(jobs, concurrency) per client process; never more processes than requests in flight."""
    procs = max(1, min(procs, concurrency))
    return list(zip(shares(n, procs), shares(concurrency, procs), strict=True))


def _child(
    base_url: str,
    kind: str,
    spec: load.Spec,
    n: int,
    concurrency: int,
    max_s: float,
    with_timeline: bool,
    ready: Queue[bool],
    go: Event,
    results: Queue[Json],
) -> None:
    async def main() -> Json:
        timeline = load.Timeline() if with_timeline else None
        async with load.client(base_url, concurrency, kind) as http:
            await http.connect(concurrency)
            call = load.make_call(http, spec, timeline)
            ready.put(True)
            await asyncio.get_running_loop().run_in_executor(None, go.wait, START_TIMEOUT_S)
            part = await load.closed_loop_part(call, n, concurrency, max_s)
        part["timeline"] = timeline.samples if timeline else []
        return part

    try:
        try:
            import uvloop

            part = uvloop.run(main())
        except ImportError:
            part = asyncio.run(main())
        results.put(part)
    except BaseException as exc:  # the parent must hear of it rather than wait for a part forever
        results.put({"failed": f"{type(exc).__name__}: {exc}"[:300]})
        raise


def closed_loop(
    base_url: str,
    spec: load.Spec,
    n: int,
    concurrency: int,
    max_s: float,
    procs: int,
    kind: str = "raw",
    with_timeline: bool = False,
    on_start: Callable[[], None] | None = None,
) -> tuple[Json, list[tuple[float, ...]]]:
    """``load.closed_loop`` over ``procs`` processes: the merged summary and the pooled timeline
    samples. ``on_start`` runs once every process is connected and waiting, just before the go
    (where the caller starts its CPU meter: spawning and connecting are not measured)."""
    layout = plan(n, concurrency, procs)
    specs = spec.split([jobs for jobs, _ in layout])
    ctx = multiprocessing.get_context("spawn")
    ready: Queue[bool] = ctx.Queue()
    results: Queue[Json] = ctx.Queue()
    go = ctx.Event()
    children = [
        ctx.Process(
            target=_child,
            args=(base_url, kind, s, jobs, conc, max_s, with_timeline, ready, go, results),
            daemon=True,
        )
        for s, (jobs, conc) in zip(specs, layout, strict=True)
    ]
    for child in children:
        child.start()
    try:
        parts = _collect(children, ready, results, on_start, go, max_s)
    finally:
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
    samples = [tuple(s) for p in parts for s in p.pop("timeline")]
    return load.merge(parts, n, concurrency), samples


def _collect(
    children: Sequence[BaseProcess],
    ready: Queue[bool],
    results: Queue[Json],
    on_start: Callable[[], None] | None,
    go: Event,
    max_s: float,
) -> list[Json]:
    deadline = time.monotonic() + START_TIMEOUT_S
    waiting = len(children)
    while waiting:
        try:
            ready.get(timeout=1)
            waiting -= 1
        except queue_module.Empty:
            pass
        if not results.empty() or time.monotonic() > deadline:
            failure = results.get() if not results.empty() else {"failed": "not ready in time"}
            raise RuntimeError(f"a load-generator process failed to start: {failure.get('failed')}")
    if on_start is not None:
        on_start()
    go.set()
    parts = []
    for _ in children:
        part = results.get(timeout=max_s + START_TIMEOUT_S)  # a job may still be answering at the deadline
        if "failed" in part:
            raise RuntimeError(f"a load-generator process failed: {part['failed']}")
        parts.append(part)
    return parts
