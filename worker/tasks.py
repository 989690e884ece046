"""Celery tasks: each states its behaviour on the decorator and hands off to a plain function."""

from __future__ import annotations

from celery import Task

from shared.celery_messages import ticket_message
from shared.logging import bound
from shared.queues import MODEL_QUEUES, TaskName
from worker.celery_app import app
from worker.chunks import run_chunk
from worker.context import current
from worker.dispatch import drain
from worker.execution import run_job, run_jobs
from worker.task_options import task_options

COMMON = task_options(max_retries=10)


@app.task(name=TaskName.DRAIN, bind=True, **COMMON)
def drain_queue(self: Task, queue: str) -> None:
    if queue not in {q.value for q in MODEL_QUEUES}:
        return  # not a model queue: a forged or stale ticket runs nothing
    drain(queue, current(), ticket=lambda: ticket_message(app, queue))


# The tasks of messages that name their jobs (sent before the scheduler existed).
@app.task(name=TaskName.PREDICT, bind=True, **COMMON)
def predict(self: Task, job_id: str) -> None:
    with bound(job_id, self.request.get("request_id")):
        run_job(job_id, current())


@app.task(name=TaskName.PREDICT_MANY, bind=True, **COMMON)
def predict_many(self: Task, job_ids: list[str]) -> None:
    # One job: its id is bound in every log line; many: each line names its job.
    with bound(job_ids[0] if len(job_ids) == 1 else None, self.request.get("request_id")):
        run_jobs(job_ids, current())


@app.task(name=TaskName.PREDICT_CHUNK, bind=True, **COMMON)
def predict_chunk(self: Task, job_id: str, chunk: int) -> None:
    with bound(job_id, self.request.get("request_id")):
        run_chunk(job_id, chunk, current())
