"""Queue and task names: the only strings the API and the worker must agree on."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    CPU = "cpu"
    GPU = "gpu"
    WEBHOOKS = "webhooks"  # deliveries have their own queue and workers: a dead receiver never slows inference


MODEL_QUEUES = (Queue.CPU, Queue.GPU)


class TaskName(StrEnum):
    DRAIN = "mlqueue.drain"  # a ticket: claim and run the work next in line (shared.scheduler)
    # Messages that name their jobs, from before the scheduler: still run, for a queue upgraded
    # with messages in it.
    PREDICT = "mlqueue.predict"
    PREDICT_MANY = "mlqueue.predict_many"
    PREDICT_CHUNK = "mlqueue.predict_chunk"
    DELIVER_WEBHOOK = "mlqueue.deliver_webhook"


class ControlCommand(StrEnum):
    """Celery remote-control commands the worker registers (broadcast to every worker)."""

    RELOAD = "mlqueue_reload_models"
