"""Running jobs: the plain functions behind the Celery tasks, testable without Celery.

Every run is idempotent on the job id: a job already finished (or canceled) is left alone, a
single job left ``running`` by a worker that died is run again, and the final write is a
compare-and-set from ``running``, so a cancel that lands mid-run wins.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from shared import cache
from shared.errors import InvalidInput, MlqueueError
from shared.jobs import Job, JobKind, JobStatus, WebhookEvent, deadline_transition
from shared.store import has_blob
from worker import metrics as worker_metrics
from worker.context import WorkerContext

log = logging.getLogger(__name__)


def begin(ctx: WorkerContext, job_id: str) -> tuple[Job, Any] | None:
    """Move the job to ``running`` (the first chunk of a batch does; later chunks join). Returns
    the job and its stored input (read together), or None when it must not run (gone, finished,
    canceled, past its deadline)."""
    job, stored_input = ctx.store.get_with_input(job_id)
    if job is None:
        log.warning("job.missing (expired before it ran)")
        return None
    if job.status.is_terminal():
        log.info("job.skipped status=%s", job.status)
        return None
    now = time.time()
    deadline = deadline_transition(job, now)
    if deadline is not None:
        if ctx.store.transition(job_id, *deadline):
            log.info("job.%s (deadline)", deadline[1]["status"].value)
            notify(ctx, job, WebhookEvent.COMPLETED)
        return None
    if job.status is JobStatus.RUNNING and job.kind is JobKind.BATCH:
        return job, stored_input
    queue_ms = round((now - job.created_at) * 1000, 3)
    running = {
        "status": JobStatus.RUNNING,
        "started_at": now,
        "metrics": {"queue_ms": queue_ms},
        "worker": ctx.hostname,
        "runner": ctx.runner,
    }
    if not ctx.store.transition(job_id, (JobStatus.QUEUED, JobStatus.RUNNING), running):
        log.info("job.skipped (canceled before start)")
        return None
    worker_metrics.observe_queue_wait(job.model, now - job.created_at)
    log.info("job.started model=%s version=%s", job.model, job.version)
    if job.status is JobStatus.QUEUED:
        notify(ctx, job, WebhookEvent.STARTED)
    # the record as just written: the final event's snapshot is built from it
    return Job.model_validate({**job.model_dump(), **running}), stored_input


def finish(ctx: WorkerContext, job: Job, fields: dict[str, Any], *, drop_blob: bool = False) -> JobStatus | None:
    """The final compare-and-set from ``running``; a job canceled meanwhile keeps its state."""
    final = Job.model_validate({**job.model_dump(), **fields})
    applied = ctx.store.transition(job.id, (JobStatus.RUNNING,), fields, snapshot=final)
    if drop_blob:  # the claim check has served its purpose either way
        ctx.store.drop_blob(job.id)
    worker_metrics.record_job_finished(job.model, fields if applied else None)
    if not applied:
        log.info("job.result_dropped (canceled while running)")
        return None
    log.info("job.%s predict_ms=%s", fields["status"].value, fields.get("metrics", {}).get("predict_ms"))
    notify(ctx, job, WebhookEvent.COMPLETED)
    return fields["status"]


def notify(ctx: WorkerContext, job: Job, event: WebhookEvent) -> None:
    """Send a webhook event with a fresh snapshot of the job; only jobs with a webhook pay the read."""
    if job.webhook is None or not job.webhook.wants(event):
        return
    try:
        current = ctx.store.get(job.id)
        if current is not None:
            ctx.notify(current, event)
    except Exception:  # a webhook must never fail the job it reports on
        log.exception("webhook.enqueue_failed event=%s", event.value)


def run_job(job_id: str, ctx: WorkerContext) -> JobStatus | None:
    """Run a single job. Returns the status it ended in (None if it did not run)."""
    started_job = begin(ctx, job_id)
    if started_job is None:
        return None
    job, stored_input = started_job
    started = job.started_at or time.time()
    queue_ms = (started - job.created_at) * 1000
    fields: dict[str, Any]
    predict_ms = None
    try:
        raw_input = ctx.store.resolve_input(stored_input)
        if raw_input is None:
            raise InvalidInput("the job's input has expired or is missing", code="input_missing")
        output, predict_ms = ctx.runtime.predict(job.model, job.version, raw_input)
        fields = {"status": JobStatus.SUCCEEDED, "output": output}
        if job.cache_key and ctx.settings.cache_ttl_s:
            cache.store(ctx.store.r, job.cache_key, output, ctx.settings.cache_ttl_s)
    except MlqueueError as exc:
        fields = {"status": JobStatus.FAILED, "error": {"code": exc.code, "message": exc.detail}}
    except Exception as exc:  # a model failure is a failed job, not a crashed task
        log.exception("job.model_error")
        fields = {
            "status": JobStatus.FAILED,
            "error": {"code": "model_error", "message": f"{type(exc).__name__}: {exc}"},
        }
    completed = time.time()
    metrics = {"queue_ms": round(queue_ms, 3), "total_ms": round((completed - job.created_at) * 1000, 3)}
    if predict_ms is not None:
        metrics["predict_ms"] = round(predict_ms, 3)
    fields = {**fields, "completed_at": completed, "metrics": metrics}
    return finish(ctx, job, fields, drop_blob=has_blob(stored_input))
