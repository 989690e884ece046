"""Queue and task names: the only strings the API and the worker must agree on."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    CPU = "cpu"
    GPU = "gpu"


class TaskName(StrEnum):
    PREDICT = "mlqueue.predict"


class ControlCommand(StrEnum):
    """Celery remote-control commands the worker registers (broadcast to every worker)."""

    RELOAD = "mlqueue_reload_models"
