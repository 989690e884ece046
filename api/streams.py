"""What the API streams: batch results (paged or NDJSON) and Server-Sent Events of a job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request

from api.deps import ApiState
from api.lifecycle import read_job
from shared.errors import Conflict, ErrorCode
from shared.jobs import Job, JobKind, JobPublic, JobStatus, QueueInfo

KEEPALIVE_S = 15.0
QUEUE_EVERY_S = 1.0  # a queued job's place in line is looked at this often


def _require_batch(job: Job) -> None:
    if job.kind is not JobKind.BATCH:
        raise Conflict(f"job {job.id} is a single job: its output is on the job itself", code=ErrorCode.NOT_A_BATCH)


async def results_page(state: ApiState, job: Job, offset: int, limit: int) -> dict[str, Any]:
    _require_batch(job)
    total = job.progress.total if job.progress else 0
    items = await state.batches.results(job.id, job.chunk_size or 1, total, offset, limit)
    next_offset = offset + len(items) if offset + len(items) < total else None
    return {
        "job_id": job.id,
        "status": job.status,
        "total": total,
        "offset": offset,
        "results": items,
        "next_offset": next_offset,
    }


def results_stream(state: ApiState, job: Job) -> AsyncIterator[bytes]:
    _require_batch(job)
    total = job.progress.total if job.progress else 0
    return state.batches.stream(job.id, job.chunks or 0, job.chunk_size or 1, total)


def sse(event: str, job: Job, event_id: int, queue: QueueInfo | None = None) -> bytes:
    data = JobPublic.from_job(job, queue).model_dump_json()
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n".encode()


async def job_event_stream(state: ApiState, job: Job, request: Request) -> AsyncIterator[bytes]:
    """``status`` events on every state change, ``progress`` events as batch chunks finish,
    ``queue`` events while it waits (its place in line, checked every second, sent when it moves);
    ends after the terminal state. Woken by the events channel; a comment every 15 s keeps proxies
    open."""
    event_id = 0
    with state.events.subscribe(job.id) as events:
        job = await read_job(state, job.id)
        place = await state.backlog.place(job)
        yield sse("status", job, event_id, place)
        quiet_s = 0.0
        while not job.status.is_terminal():
            timeout = QUEUE_EVERY_S if job.status is JobStatus.QUEUED else KEEPALIVE_S
            try:
                await asyncio.wait_for(events.get(), timeout)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                moved = await state.backlog.place(job) if job.status is JobStatus.QUEUED else None
                if moved is not None and moved != place:
                    event_id, place, quiet_s = event_id + 1, moved, 0.0
                    yield sse("queue", job, event_id, place)
                    continue
                quiet_s += timeout
                if quiet_s >= KEEPALIVE_S:
                    quiet_s = 0.0
                    yield b": keep-alive\n\n"
                continue
            previous, job = job, await read_job(state, job.id)
            if job.status != previous.status:
                event_id += 1
                yield sse("status", job, event_id)
            elif job.progress != previous.progress:
                event_id += 1
                yield sse("progress", job, event_id)
