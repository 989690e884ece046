"""Running one job: the plain function behind the Celery task, testable without Celery."""

from __future__ import annotations

import logging
import time

from shared.errors import InvalidInput, MlqueueError
from shared.jobs import JobStatus
from worker.context import WorkerContext

log = logging.getLogger(__name__)


def run_job(job_id: str, ctx: WorkerContext) -> JobStatus | None:
    """Idempotent on the job id: a job already finished (or canceled) is left alone, a job left
    ``running`` by a worker that died is run again. Returns the status it ended in."""
    job = ctx.store.get(job_id)
    if job is None:
        log.warning("job.missing (expired before it ran)")
        return None
    if job.status.is_terminal():
        log.info("job.skipped status=%s", job.status)
        return job.status
    started = time.time()
    queue_ms = (started - job.created_at) * 1000
    running = {"status": JobStatus.RUNNING, "started_at": started, "metrics": {"queue_ms": round(queue_ms, 3)}}
    if not ctx.store.transition(job_id, (JobStatus.QUEUED, JobStatus.RUNNING), running):
        log.info("job.skipped (canceled before start)")
        return None
    log.info("job.started model=%s version=%s", job.model, job.version)

    raw_input = ctx.store.get_input(job_id)
    try:
        if raw_input is None:
            raise InvalidInput("the job's input has expired or is missing", code="input_missing")
        output, predict_ms = ctx.runtime.predict(job.model, job.version, raw_input)
    except MlqueueError as exc:
        return _finish(
            ctx,
            job_id,
            started,
            queue_ms,
            None,
            status=JobStatus.FAILED,
            error={"code": exc.code, "message": exc.detail},
        )
    except Exception as exc:  # a model failure is a failed job, not a crashed task
        log.exception("job.model_error")
        return _finish(
            ctx,
            job_id,
            started,
            queue_ms,
            None,
            status=JobStatus.FAILED,
            error={"code": "model_error", "message": f"{type(exc).__name__}: {exc}"},
        )
    return _finish(ctx, job_id, started, queue_ms, predict_ms, status=JobStatus.SUCCEEDED, output=output)


def _finish(
    ctx: WorkerContext,
    job_id: str,
    started: float,
    queue_ms: float,
    predict_ms: float | None,
    *,
    status: JobStatus,
    output: object = None,
    error: dict | None = None,
) -> JobStatus | None:
    completed = time.time()
    metrics = {"queue_ms": round(queue_ms, 3), "total_ms": round(queue_ms + (completed - started) * 1000, 3)}
    if predict_ms is not None:
        metrics["predict_ms"] = round(predict_ms, 3)
    fields: dict = {"status": status, "completed_at": completed, "metrics": metrics}
    if output is not None:
        fields["output"] = output
    if error is not None:
        fields["error"] = error
    applied = ctx.store.transition(job_id, (JobStatus.RUNNING,), fields)
    ctx.store.drop_blob(job_id)  # the claim check has served its purpose either way
    if not applied:
        log.info("job.result_dropped (canceled while running)")
        return None
    log.info("job.%s predict_ms=%s", status.value, metrics.get("predict_ms"))
    return status
