"""The Celery configuration both sides share: the API only sends tasks by name, the worker runs them."""

from __future__ import annotations

from celery import Celery
from kombu.entity import Queue as KombuQueue

from shared.queues import Queue
from shared.redis_connection import broker_transport_options, broker_url
from shared.settings import Settings


def make_celery(settings: Settings, *, publisher: bool = False) -> Celery:
    """``publisher=True`` for the API: connecting and sending give up after one retry, so a dead
    broker is a quick 503. A worker retries the broker forever (a restarted Redis is routine)."""
    app = Celery("mlqueue", broker=broker_url(settings), set_as_current=False)
    transport_options = {
        # Unacked messages return to the queue after this long; it must exceed the longest a
        # message stays unacked (a ticket's drain), or a second worker takes it too (harmless: a
        # ticket only wakes a worker, and claims are atomic).
        "visibility_timeout": settings.visibility_timeout_s,
        # kombu's own restore of unacked messages past the visibility timeout scans only every
        # interval x throttle seconds (10 x 10 by default); every 10 s here. It is the backstop: the
        # sweeper (worker.sweeper) puts a dead worker's work back in line and sends a ticket long
        # before the timeout.
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
        # Above the 1 s BRPOP timeout of the consumer, or every idle poll would time out.
        "socket_timeout": max(5.0, settings.redis_socket_timeout_s),
        "socket_connect_timeout": settings.redis_socket_timeout_s,
        "socket_keepalive": True,
        "health_check_interval": 25,
        **broker_transport_options(settings),  # a Sentinel group's master name
    }
    if publisher:
        transport_options["max_retries"] = 1
    app.conf.update(
        # JSON only: unpickling a message runs code. Images travel as a claim check (a Redis key).
        task_serializer="json",
        accept_content=["json"],
        # The job record in Redis is the result store; Celery's result backend is not used, and
        # a task's Celery state never stands in for a job's state ("PENDING" also means "unknown").
        task_ignore_result=True,
        result_backend=None,
        # A message is acked after the run, and requeued if the worker process dies: a crash loses no job.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One reserved message per execution slot: a message sitting in one worker's prefetch
        # buffer is a job another idle worker cannot take. Batching comes from the slots
        # (threads) running at once, not from prefetch.
        worker_prefetch_multiplier=1,
        broker_transport_options=transport_options,
        broker_connection_timeout=settings.redis_socket_timeout_s,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=1 if publisher else None,  # None = forever (0 is not)
        # Publishing from the API must fail fast so it can answer 503; a long retry would hang the request.
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.3},
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=max(1, settings.task_time_limit_s - 10),
        task_default_queue=Queue.CPU.value,
        task_queues=[KombuQueue(q.value, routing_key=q.value) for q in Queue],
        task_create_missing_queues=True,
        worker_send_task_events=settings.task_events,  # for Flower
        worker_hijack_root_logger=False,
    )
    return app
