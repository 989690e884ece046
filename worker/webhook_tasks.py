"""The webhook delivery task. It runs on the ``webhooks`` queue, on workers of its own::

    MLQUEUE_WORKER_QUEUES=webhooks MLQUEUE_WORKER_CONCURRENCY=32 python -m worker

Such a worker loads no models (``worker.celery_app``); its threads only wait on receivers, so it
can run many. Retries are not Celery countdowns: ``run_delivery`` puts the next attempt in the
Redis delayed set and the worker's ``Scheduler`` sends it again when it is due (``worker.delayed``).
"""

from __future__ import annotations

from typing import Any

from shared.logging import job_id_var
from shared.queues import TaskName
from worker.celery_app import app, settings
from worker.context import current
from worker.task_options import task_options
from worker.webhooks import retry_queue, run_delivery


@app.task(
    name=TaskName.DELIVER_WEBHOOK,
    # Not enforced by the threads pool; the HTTP timeout is what bounds an attempt.
    time_limit=settings.webhook_timeout_s + 20,
    soft_time_limit=settings.webhook_timeout_s + 10,
    # A Redis blip while logging the attempt is retried shortly (well under the
    # visibility timeout); the receiver's own failures go through the retry schedule instead.
    **task_options(max_retries=5),
)
def deliver_webhook(job_id: str, message: dict[str, Any], attempt: int = 1) -> None:
    ctx = current()
    token = job_id_var.set(job_id)
    try:
        run_delivery(ctx.store, ctx.settings, retry_queue(ctx.store.r, ctx.settings), job_id, message, attempt)
    finally:
        job_id_var.reset(token)
