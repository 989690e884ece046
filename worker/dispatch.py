"""Draining a model queue: a ticket's task claims the work next in line and runs it, until none is left.

Which work is next is the scheduler's answer (``shared.scheduler``: priorities, fair shares). A
worker process runs at most ``worker_slots`` items per queue at once, so what it has claimed is
always about to run: a job that arrives with a better place in line is claimed as soon as a slot
frees, within one forward pass, not after everything an eager worker took early.

An item claimed before (its worker died while running it) runs alone: if it is what killed the
worker, the jobs that shared its forward pass are not killed with it again, and it alone reaches
``max_deliveries`` and becomes a dead letter (``worker.sweeper``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from shared.scheduler import Claim
from worker.chunks import run_chunk
from worker.context import WorkerContext
from worker.execution import run_jobs

log = logging.getLogger(__name__)

DRAIN_BUDGET_S = 30.0  # then a fresh ticket carries on: no ticket stays unacknowledged for long


def drain(queue: str, ctx: WorkerContext, ticket: Callable[[], str]) -> int:
    """Claim and run ``queue``'s work until its line is empty; returns the items run. ``ticket``
    makes a ticket message: each claim that leaves work in line with no ticket waiting queues one
    (so idle workers join in, whoever holds the other tickets), as does running out of budget."""
    deadline = time.monotonic() + DRAIN_BUDGET_S
    slot, chunk_slot = ctx.slots(queue)
    ran = 0
    while time.monotonic() < deadline:
        with slot:
            chunks = chunk_slot.acquire(blocking=False)
            try:
                claims = ctx.scheduler.claim(queue, ctx.runner, ticket=ticket(), chunks=chunks)
                if not claims:
                    return ran
                run_claims(ctx, queue, claims)
            finally:
                if chunks:
                    chunk_slot.release()
        ran += len(claims)
    ctx.store.r.lpush(queue, ticket())
    return ran


def run_claims(ctx: WorkerContext, queue: str, claims: Sequence[Claim]) -> None:
    """Run what was claimed, releasing each piece as soon as it is done. If running fails (Redis
    unreachable mid-run), what is left goes back in line at once; the exception propagates (the
    ticket is retried)."""
    left = list(claims)
    try:
        fresh = [c for c in left if c.chunk is None and c.deliveries == 1]
        if fresh:
            run_jobs([c.job_id for c in fresh], ctx)
            left = _released(ctx, queue, left, fresh)
        for c in list(left):
            if c.chunk is None:
                log.warning("job.redelivered deliveries=%s (run alone)", c.deliveries, extra={"job_id": c.job_id})
                run_jobs([c.job_id], ctx)
            else:
                run_chunk(c.job_id, c.chunk, ctx)
            left = _released(ctx, queue, left, [c])
    except Exception:
        for c in left:
            try:
                ctx.scheduler.requeue(queue, c.member, c.claim)
            except Exception:  # noqa: BLE001 - Redis is down: the sweeper's claim bound puts it back
                log.warning("job.give_back_failed member=%s", c.member)
        raise


def _released(ctx: WorkerContext, queue: str, left: list[Claim], done: list[Claim]) -> list[Claim]:
    ctx.scheduler.release(queue, [c.member for c in done])
    return [c for c in left if c not in done]
