"""The worker's Celery app. ``celery -A worker.celery_app`` (Flower too) imports this: it must
stay light. Models load in the ``worker_init`` signal, in the one process that runs tasks."""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from celery import signals
from celery.worker.control import control_command

from shared.celery_app import make_celery
from shared.logging import setup_logging
from shared.queues import ControlCommand
from shared.settings import get_settings
from shared.store import redis_client

settings = get_settings()
app = make_celery(settings)
app.conf.include = ["worker.tasks"]

log = logging.getLogger(__name__)
_heartbeat: Any = None


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    setup_logging(settings.log_format, settings.log_level)


@signals.worker_init.connect
def _load_models(sender: Any = None, **_: Any) -> None:
    # Rule 1: TensorFlow is not fork-safe. Only single-process pools (threads, solo) are allowed,
    # so the models are loaded in the process that runs the tasks and nothing forks afterwards.
    pool = getattr(sender, "pool_cls", None)
    pool_name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    if "prefork" in pool_name or "processes" in pool_name:
        raise SystemExit(
            "mlqueue workers run --pool=threads (or solo): TensorFlow is not fork-safe. "
            "Run one worker process per GPU / per machine and scale with more processes."
        )
    from worker.context import cap_threads, init_context

    cap_threads(settings)
    init_context(settings)


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    global _heartbeat
    from worker.context import current
    from worker.heartbeat import Heartbeat

    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values())
    hostname = getattr(sender, "hostname", None) or socket.gethostname()
    runtime = current().runtime
    _heartbeat = Heartbeat(redis_client(settings), hostname, queues, settings.heartbeat_interval_s, runtime.status)
    runtime.on_change = _heartbeat.beat
    _heartbeat.start()
    log.info("worker.ready hostname=%s queues=%s", hostname, ",".join(queues))


@signals.worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()


@control_command(name=ControlCommand.RELOAD)
def _reload_models(state: Any, **_: Any) -> dict[str, str]:
    """Load new versions in the background: the consumer keeps taking jobs meanwhile, and the
    outcome (loaded, or failed and why) appears in this worker's presence."""
    from worker.context import current

    threading.Thread(target=current().runtime.load_all, name="reload", daemon=True).start()
    return {"ok": "reloading"}
