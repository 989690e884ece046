"""Running jobs: the plain functions behind the Celery tasks, testable without Celery.

Every run is idempotent on the job id: a job already finished (or canceled) is left alone, a
single job left ``running`` by a worker that died is run again, and the final write is a
compare-and-set from ``running``, so a cancel that lands mid-run wins.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from shared import cache
from shared.errors import ErrorCode, MlqueueError
from shared.fastjson import JsonValue
from shared.jobs import Job, JobKind, JobStatus, WebhookEvent, deadline_transition
from shared.store import Transition, has_blob
from shared.webhook_events import wants_event
from worker import metrics as worker_metrics
from worker.context import WorkerContext

log = logging.getLogger(__name__)


def _ids(job: Job | str) -> dict[str, str | None]:
    """The job a log line is about, and the request that created it: one claim runs the jobs of
    many requests, so the task cannot bind them."""
    if isinstance(job, str):
        return {"job_id": job}
    return {"job_id": job.id, "request_id": job.request_id}


RUNNABLE = (JobStatus.QUEUED, JobStatus.RUNNING)  # running: a redelivery after its worker died


@dataclass(frozen=True)
class Started:
    """A job this worker may run: its record as moved to ``running``, and its stored input."""

    job: Job
    stored_input: JsonValue  # as ``JobStore.get_with_input`` reads it (a claim check still unresolved)


@dataclass(frozen=True)
class Outcome:
    """A job's final write: the fields to set from ``running``, and whether to drop its claim check."""

    job: Job
    fields: dict[str, Any]
    drop_blob: bool = False


@dataclass(frozen=True)
class _Move:
    """A job ``begin_many`` moves to running: where it stands in the reply, and what it writes."""

    index: int
    job: Job
    stored_input: JsonValue
    running: dict[str, Any]


def begin(ctx: WorkerContext, job_id: str) -> Started | None:
    """Move the job to ``running`` (the first chunk of a batch does; later chunks join). Returns
    the job and its stored input (read together), or None when it must not run (gone, finished,
    canceled, past its deadline)."""
    return begin_many(ctx, [job_id])[0]


def begin_many(ctx: WorkerContext, job_ids: Sequence[str]) -> list[Started | None]:
    """``begin`` for jobs that arrived together: read in one round trip, started in another."""
    now = time.time()
    read = ctx.store.get_many_with_input(job_ids)
    started: list[Started | None] = [None] * len(job_ids)
    moves: list[_Move] = []
    for i, stored in enumerate(read):
        job = stored.job
        if job is None:
            log.warning("job.missing (expired before it ran)", extra=_ids(job_ids[i]))
            continue
        if job.status.is_terminal():
            log.info("job.skipped status=%s", job.status, extra=_ids(job))
            continue
        deadline = deadline_transition(job, now)
        if deadline is not None:
            if ctx.store.transition(job.id, deadline.allowed, deadline.fields):
                log.info("job.%s (deadline)", deadline.fields["status"].value, extra=_ids(job))
                notify(ctx, job, WebhookEvent.COMPLETED)
            continue
        if job.status is JobStatus.RUNNING and job.kind is JobKind.BATCH:
            started[i] = Started(job, stored.stored_input)
            continue
        running = {
            "status": JobStatus.RUNNING,
            "started_at": now,
            "metrics": {"queue_ms": round((now - job.created_at) * 1000, 3)},
            "worker": ctx.hostname,
        }
        moves.append(_Move(i, job, stored.stored_input, running))
    applied = ctx.store.transition_many([Transition(move.job.id, RUNNABLE, move.running) for move in moves])
    for move, ok in zip(moves, applied, strict=True):
        job = move.job
        if not ok:
            log.info("job.skipped (canceled before start)", extra=_ids(job))
            continue
        worker_metrics.observe_queue_wait(job.model, now - job.created_at)
        log.info("job.started model=%s version=%s", job.model, job.version, extra=_ids(job))
        if job.status is JobStatus.QUEUED:
            notify(ctx, job, WebhookEvent.STARTED)
        # the record as just written: the final event's snapshot is built from it
        started[move.index] = Started(Job.model_validate({**job.model_dump(), **move.running}), move.stored_input)
    return started


def finish(ctx: WorkerContext, job: Job, fields: dict[str, Any], *, drop_blob: bool = False) -> JobStatus | None:
    """The final compare-and-set from ``running``; a job canceled meanwhile keeps its state."""
    return finish_many(ctx, [Outcome(job, fields, drop_blob)])[0]


def finish_many(ctx: WorkerContext, results: Sequence[Outcome]) -> list[JobStatus | None]:
    """``finish`` for many jobs in one round trip."""
    moves = [
        Transition(r.job.id, (JobStatus.RUNNING,), r.fields, Job.model_validate({**r.job.model_dump(), **r.fields}))
        for r in results
    ]
    ttl = ctx.settings.cache_ttl_s
    cached = [
        (r.job.cache_key, r.fields["output"])
        for r in results
        if r.job.cache_key and r.fields["status"] is JobStatus.SUCCEEDED
    ]

    def write_cache(pipe: redis.client.Pipeline) -> None:  # in the same round trip, ahead of the final writes
        for key, output in cached if ttl else ():
            cache.store(pipe, key, output, ttl)

    drop = [r.job.id for r in results if r.drop_blob]
    applied = ctx.store.transition_many(moves, drop_blobs=drop, before=write_cache)
    statuses: list[JobStatus | None] = []
    for r, ok in zip(results, applied, strict=True):
        job, fields = r.job, r.fields
        worker_metrics.record_job_finished(job.model, fields if ok else None)
        if not ok:
            log.info("job.result_dropped (canceled while running)", extra=_ids(job))
            statuses.append(None)
            continue
        predict_ms = fields.get("metrics", {}).get("predict_ms")
        log.info("job.%s predict_ms=%s", fields["status"].value, predict_ms, extra=_ids(job))
        notify(ctx, job, WebhookEvent.COMPLETED)
        statuses.append(fields["status"])
    return statuses


def notify(ctx: WorkerContext, job: Job, event: WebhookEvent) -> None:
    """Send a webhook event with a fresh snapshot of the job; only jobs with a webhook pay the read."""
    if not wants_event(job, event):
        return
    try:
        current = ctx.store.get(job.id)
        if current is not None:
            ctx.notify(current, event)
    except Exception:  # a webhook must never fail the job it reports on
        log.exception("webhook.enqueue_failed event=%s", event.value)


def run_job(job_id: str, ctx: WorkerContext) -> JobStatus | None:
    """Run a single job. Returns the status it ended in (None if it did not run)."""
    return run_jobs([job_id], ctx)[0]


def run_jobs(job_ids: Sequence[str], ctx: WorkerContext) -> list[JobStatus | None]:
    """Run single jobs that arrived together (one message): read and started in one round trip
    each, one forward pass per model version, finished in one round trip. Returns each job's
    final status (None for a job that did not run)."""
    started = begin_many(ctx, job_ids)
    runnable = [(i, begun) for i, begun in enumerate(started) if begun is not None]
    raw_inputs = ctx.store.resolve_inputs([begun.stored_input for _, begun in runnable])
    groups: dict[tuple[str, int], list[int]] = {}
    for k, (_, begun) in enumerate(runnable):
        groups.setdefault((begun.job.model, begun.job.version), []).append(k)
    outcomes: list[dict[str, Any]] = [{} for _ in runnable]
    for (model, version), members in groups.items():
        for k, fields in zip(members, _predict(ctx, model, version, [raw_inputs[k] for k in members]), strict=True):
            outcomes[k] = fields
    completed = time.time()
    results = []
    for (_, begun), fields in zip(runnable, outcomes, strict=True):
        job = begun.job
        started_at = job.started_at or completed
        metrics = {
            "queue_ms": round((started_at - job.created_at) * 1000, 3),
            "total_ms": round((completed - job.created_at) * 1000, 3),
        }
        if "predict_ms" in fields:
            metrics["predict_ms"] = round(fields.pop("predict_ms"), 3)
        # a failed job keeps its image (until the job expires): POST /v1/jobs/{id}/retry re-runs it
        drop = has_blob(begun.stored_input) and fields["status"] is JobStatus.SUCCEEDED
        results.append(Outcome(job, {**fields, "completed_at": completed, "metrics": metrics}, drop))
    statuses: list[JobStatus | None] = [None] * len(job_ids)
    for (i, _), status in zip(runnable, finish_many(ctx, results), strict=True):
        statuses[i] = status
    return statuses


def _predict(ctx: WorkerContext, model: str, version: int, raw_inputs: list[Any]) -> list[dict[str, Any]]:
    """Each job's result fields (status, output or error, predict_ms) from one forward pass."""
    try:
        outputs, predict_ms = ctx.runtime.predict_many(model, version, raw_inputs)
    except MlqueueError as exc:  # the model is not available here
        return [_failed(exc.code, exc.detail) for _ in raw_inputs]
    except Exception as exc:  # a model failure is a failed job, not a crashed task
        log.exception("job.model_error model=%s", model)
        return [_failed(ErrorCode.MODEL_ERROR, f"{type(exc).__name__}: {exc}") for _ in raw_inputs]
    results = []
    for output in outputs:
        if isinstance(output, MlqueueError):
            results.append(_failed(output.code, output.detail))
        elif isinstance(output, BaseException):
            log.error("job.model_error model=%s error=%r", model, output)
            results.append(_failed(ErrorCode.MODEL_ERROR, f"{type(output).__name__}: {output}"))
        else:
            results.append({"status": JobStatus.SUCCEEDED, "output": output, "predict_ms": predict_ms})
    return results


def _failed(code: ErrorCode, message: str) -> dict[str, Any]:
    return {"status": JobStatus.FAILED, "error": {"code": code, "message": message}}
