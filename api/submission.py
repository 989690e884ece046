"""Creating a job: validate against the manifest, write the record, send the task, maybe wait."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from typing import Any

import anyio
from kombu.exceptions import OperationalError
from pydantic import ValidationError

from api.deps import ApiState
from shared.errors import InvalidInput, Unavailable
from shared.jobs import Job, JobCreate, JobStatus, new_job_id
from shared.manifests import ModelManifest, validate_features
from shared.presence import live_workers
from shared.queues import Queue, TaskName

log = logging.getLogger(__name__)

_WAIT_RE = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+)")
SEND_TIMEOUT_S = 5.0


def parse_prefer_wait(header: str | None, max_wait_s: int) -> int:
    """``Prefer: wait=N`` (RFC 7240), clamped to the configured maximum; absent or malformed = 0."""
    match = _WAIT_RE.search(header or "")
    return min(int(match.group(1)), max_wait_s) if match else 0


def parse_job_create(body: Any) -> JobCreate:
    if not isinstance(body, dict):
        raise InvalidInput('body must be a JSON object like {"input": ...}', code="invalid_request")
    try:
        return JobCreate.model_validate(body)
    except ValidationError as exc:
        raise InvalidInput(_describe(exc), code="invalid_request") from exc


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


def request_hash(model: str, request: JobCreate) -> str:
    canonical = json.dumps({"model": model, **request.model_dump()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def choose_queue(state: ApiState, manifest: ModelManifest) -> str:
    """GPU models go to the gpu queue when a live worker consumes it, else they run on CPU."""
    if manifest.queue != Queue.GPU:
        return manifest.queue.value
    workers = await live_workers(state.redis, state.settings.heartbeat_interval_s)
    has_gpu = any(Queue.GPU.value in w.get("queues", ()) for w in workers)
    return Queue.GPU.value if has_gpu else Queue.CPU.value


async def create_job(state: ApiState, model: str, request: JobCreate, idempotency_key: str | None) -> tuple[Job, bool]:
    """Validate, write the record, then send the task. Returns (job, created)."""
    manifest = state.repository.get(model, request.version)
    validate_features(manifest, request.input)
    job = Job(
        id=new_job_id(),
        model=manifest.name,
        version=manifest.version,
        queue=await choose_queue(state, manifest),
        created_at=time.time(),
        request_hash=request_hash(model, request) if idempotency_key else None,
    )
    job, created = await state.store.create(job, request.input, idempotency_key)
    if created:
        await send_task(state, job)
        log.info("job.enqueued model=%s version=%s queue=%s", job.model, job.version, job.queue)
    return job, created


async def send_task(state: ApiState, job: Job) -> None:
    def send() -> None:
        state.publisher.send_task(TaskName.PREDICT, args=[job.id], queue=job.queue, task_id=job.id)

    try:
        with anyio.fail_after(SEND_TIMEOUT_S):
            await anyio.to_thread.run_sync(send, abandon_on_cancel=True)
    except (OperationalError, OSError, TimeoutError) as exc:
        log.error("job.enqueue_failed error=%s", exc)
        with contextlib.suppress(Exception):  # Redis is likely down too; the 503 is what matters
            await state.store.fail_unsent(job.id, "the broker could not be reached")
        raise Unavailable("the job queue is unavailable; retry later", code="broker_unavailable") from exc


async def wait_for_terminal(state: ApiState, job: Job, timeout_s: float) -> Job:
    """Hold until the job is terminal or the timeout passes, woken by events (no polling)."""
    if timeout_s <= 0 or job.status.is_terminal():
        return job
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    with state.events.subscribe(job.id) as events:
        job = await state.store.get(job.id)  # it may have finished before we subscribed
        while not job.status.is_terminal():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                event = await asyncio.wait_for(events.get(), remaining)
            except TimeoutError:
                break
            status = event.get("status")
            if event.get("resync") or (status and JobStatus(status).is_terminal()):
                job = await state.store.get(job.id)
    return job
