"""The worker's Celery app. ``celery -A worker.celery_app`` (Flower too) imports this: it must
stay light. Models load in the ``worker_init`` signal, in the one process that runs tasks.

A worker that consumes no model queue loads no models; the webhook delivery workers are such:
``MLQUEUE_WORKER_QUEUES=webhooks MLQUEUE_WORKER_CONCURRENCY=32 python -m worker``. Every worker
that consumes ``webhooks`` also runs the retry scheduler (``worker.delayed``)."""

from __future__ import annotations

import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

from celery import signals
from celery.worker.control import control_command

from shared.celery_app import make_celery
from shared.logging import setup_logging
from shared.queues import MODEL_QUEUES, ControlCommand, Queue
from shared.redis_connection import redis_client
from shared.settings import get_settings

if TYPE_CHECKING:  # imported when the worker starts, after the checks above (never by the API)
    from worker.delayed import Scheduler
    from worker.heartbeat import Heartbeat
    from worker.sweeper import Sweeper

settings = get_settings()
app = make_celery(settings)
app.conf.include = ["worker.tasks", "worker.webhook_tasks"]

log = logging.getLogger(__name__)
_heartbeat: Heartbeat | None = None
_scheduler: Scheduler | None = None
_sweeper: Sweeper | None = None
_loads_models = True


# Celery's signals and control commands pass untyped senders (a WorkController, a Consumer's state).


def _consumed_queues(sender: Any) -> set[str]:
    """The queues this worker consumes (``-Q`` included), else those of the settings."""
    try:
        names = {q.name for q in sender.app.amqp.queues.consume_from.values()}
    except AttributeError:
        names = set()
    return names or {q.strip() for q in settings.worker_queues.split(",") if q.strip()}


def _serves_models(queues: set[str]) -> bool:
    return any(q.value in queues for q in MODEL_QUEUES)


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    setup_logging(settings.log_format, settings.log_level)


@signals.worker_init.connect
def _load_models(sender: Any = None, **_: Any) -> None:
    global _loads_models
    # TensorFlow is not fork-safe. Only single-process pools (threads, solo) are allowed,
    # so the models are loaded in the process that runs the tasks and nothing forks afterwards.
    pool = getattr(sender, "pool_cls", None)
    pool_name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    if "prefork" in pool_name or "processes" in pool_name:
        raise SystemExit(
            "mlqueue workers run --pool=threads (or solo): TensorFlow is not fork-safe. "
            "Run one worker process per GPU / per machine and scale with more processes."
        )
    from shared.webhook_events import send_event
    from worker.context import cap_threads, init_context

    cap_threads(settings)
    # A worker on no model queue (webhooks only) loads no models: it never runs a prediction.
    _loads_models = _serves_models(_consumed_queues(sender))
    ctx = init_context(settings, load_models=_loads_models)
    ctx.notify = lambda job, event: send_event(app, job, event)


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    global _heartbeat
    from worker.context import current
    from worker.heartbeat import Heartbeat, advertised_address
    from worker.metrics import start_metrics_server

    start_metrics_server(settings.worker_metrics_port, settings.worker_metrics_bind)  # 0 = off
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values())
    hostname = getattr(sender, "hostname", None) or socket.gethostname()
    current().hostname = hostname
    runtime = current().runtime
    _heartbeat = Heartbeat(
        redis_client(settings),
        hostname,
        queues,
        settings.heartbeat_interval_s,
        runtime.status,
        current().incarnation,
        address=advertised_address(settings),
    )
    runtime.on_change = _heartbeat.beat
    _heartbeat.start()
    if Queue.WEBHOOKS.value in queues:
        _start_webhook_scheduler()
    if _serves_models(set(queues)):
        _start_sweeper()
    log.info("worker.ready hostname=%s queues=%s", hostname, ",".join(queues))


def _start_webhook_scheduler() -> None:
    """Webhook retries wait in a Redis sorted set; this thread sends them again when due."""
    global _scheduler
    from worker.delayed import Scheduler
    from worker.webhooks import retry_queue, send_attempt

    queue = retry_queue(redis_client(settings), settings)
    _scheduler = Scheduler(queue, lambda payload: send_attempt(app, payload)).start()


def _start_sweeper() -> None:
    """Every model worker runs one; a lease in Redis lets one of them sweep at a time."""
    global _sweeper
    from worker.context import current
    from worker.sweeper import Sweeper

    _sweeper = Sweeper(app, redis_client(settings), settings, holder=current().runner).start()


@signals.worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop()
    if _scheduler is not None:
        _scheduler.stop()
    if _heartbeat is not None:
        _heartbeat.stop()


@control_command(name=ControlCommand.RELOAD)
def _reload_models(state: Any, **_: Any) -> dict[str, str]:
    """Load new versions in the background: the consumer keeps taking jobs meanwhile, and the
    outcome (loaded, or failed and why) appears in this worker's presence."""
    from worker.context import current

    if not _loads_models:
        return {"ok": "no model queues"}  # a webhooks-only worker holds no models
    threading.Thread(target=current().runtime.load_all, name="reload", daemon=True).start()
    return {"ok": "reloading"}
