"""``GET /metrics``: the API's Prometheus metrics, in a registry of its own.

- HTTP: requests and latency by method, route *template* (``/v1/jobs/{job_id}``, never the raw path,
  so the number of series stays bounded) and status, recorded by a pure ASGI middleware (a
  ``BaseHTTPMiddleware`` would buffer and break SSE and NDJSON streams).
- Jobs created, by model and kind (``record_job_created``, called by the submission code).
- Per queue, read from Redis at scrape time: depth, age of the oldest queued message, live
  consumers, and messages waiting with no live consumer: the signals to autoscale workers on
  (KEDA, HPA external metrics, SageMaker's ``ApproximateBacklogSize``/``HasBacklogWithoutCapacity``).

One registry per API process: with several API processes, Prometheus scrapes each of them (the
queue gauges then agree across processes; sum the counters).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.security import require_metrics_token
from shared.jobs import job_id_created_at
from shared.queues import MODEL_QUEUES, Queue
from shared.scheduler import queue_state

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, ...

HTTP_REQUESTS = Counter(
    "mlqueue_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "mlqueue_http_request_duration_seconds",
    "Time from request to the end of the response body (long polls and streams count their full length).",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
JOBS_CREATED = Counter(
    "mlqueue_jobs_created_total",
    "Jobs accepted and enqueued (idempotent replays excluded), by model and kind (single|batch).",
    ["model", "kind"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "mlqueue_queue_depth",
    "Work waiting in the queue, not yet claimed by a worker: single jobs and batch chunks (model queues), "
    "deliveries (webhooks).",
    ["queue"],
    registry=REGISTRY,
)
QUEUE_OLDEST_AGE = Gauge(
    "mlqueue_queue_oldest_age_seconds",
    "Age of the oldest work waiting in the queue; 0 when the queue is empty.",
    ["queue"],
    registry=REGISTRY,
)
QUEUE_DRAIN_RATE = Gauge(
    "mlqueue_queue_drain_rate",
    "Work claimed per second from a model queue over the last 10 s (what queue.eta_s and Retry-After use).",
    ["queue"],
    registry=REGISTRY,
)
QUEUE_CONSUMERS = Gauge(
    "mlqueue_queue_consumers", "Live workers consuming the queue (from worker presence).", ["queue"], registry=REGISTRY
)
QUEUE_WAITING_WITHOUT_CONSUMER = Gauge(
    "mlqueue_queue_waiting_without_consumer",
    "Messages waiting in a queue that no live worker consumes (the queue depth when consumers is 0, else 0).",
    ["queue"],
    registry=REGISTRY,
)
LIVE_WORKERS = Gauge("mlqueue_live_workers", "Workers with a fresh heartbeat.", registry=REGISTRY)
QUEUE_SCRAPE_OK = Gauge(
    "mlqueue_queue_metrics_up", "1 when the last scrape could read the queues from Redis, else 0.", registry=REGISTRY
)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OLDEST_SCAN = 10  # messages looked at from the queue's tail to find one with a ULID id


def record_job_created(model: str, kind: str) -> None:
    """Count one created job (call it once per job actually created, not for idempotent replays)."""
    JOBS_CREATED.labels(model=model, kind=kind).inc()


class MetricsMiddleware:
    """Counts and times every HTTP request by route template. Pure ASGI: streams pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server error middleware answers when the app raises before responding

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            method = scope.get("method", "GET")
            method = method if method in METHODS else "other"
            route = route_template(scope)
            HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            HTTP_DURATION.labels(method=method, route=route).observe(time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The matched route's path template (set in the scope by the router), else ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


def message_created_s(raw: Any) -> float | None:
    """When the job behind a queued kombu message was created: ``headers.id`` is the job id (single
    jobs) or ``{job_id}.{chunk}`` (batch chunks), a ULID whose first characters are its creation time."""
    try:
        envelope = json.loads(raw)
        task_id = envelope["headers"]["id"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(task_id, str):
        return None
    return job_id_created_at(task_id.split(".", 1)[0])


class QueueSampler:
    """Reads the queue gauges from Redis. Model queues: the scheduler's line. The webhooks queue is a
    plain Celery queue: kombu's Redis transport keeps it as a LIST pushed with LPUSH and popped with
    BRPOP, so the oldest message is at index -1; a message whose id is no ULID (a delivery's task id
    is a UUID) is dated from the first scrape that saw it at the tail: a lower bound of its age."""

    def __init__(self) -> None:
        self._first_seen: dict[str, tuple[str, float]] = {}  # queue -> (raw message, first seen at)

    async def sample(self, state: Any) -> None:
        try:
            await self._sample(state)
        except Exception as exc:  # noqa: BLE001 - the HTTP metrics still answer when Redis is down
            log.warning("metrics.queue_sample_failed error=%s", exc)
            QUEUE_SCRAPE_OK.set(0)
            gauges = (QUEUE_DEPTH, QUEUE_OLDEST_AGE, QUEUE_DRAIN_RATE, QUEUE_CONSUMERS, QUEUE_WAITING_WITHOUT_CONSUMER)
            for gauge in gauges:
                gauge.clear()  # no stale numbers: an absent series is "unknown", not "empty"
            return
        QUEUE_SCRAPE_OK.set(1)

    async def _sample(self, state: Any) -> None:
        """Model queues from the scheduler's line (``shared.scheduler``); the webhooks queue, a
        plain Celery queue, from its list."""
        now = time.time()
        depths: dict[str, tuple[int, float]] = {}
        for queue in MODEL_QUEUES:
            line = await queue_state(state.redis, queue.value, now)
            depths[queue.value] = line.backlog, line.oldest_age_s
            QUEUE_DRAIN_RATE.labels(queue=queue.value).set(line.drain_rate)
        async with state.redis.pipeline(transaction=False) as pipe:
            pipe.llen(Queue.WEBHOOKS.value)
            pipe.lrange(Queue.WEBHOOKS.value, -OLDEST_SCAN, -1)
            depth, tail = await pipe.execute()
        depths[Queue.WEBHOOKS.value] = int(depth), self._oldest_age(Queue.WEBHOOKS.value, tail, now) if depth else 0
        workers = await state.fleet.workers(fresh=True)
        consumers = await state.fleet.consumers()
        LIVE_WORKERS.set(len(workers))
        for name, (depth, oldest) in depths.items():
            live = len(consumers.get(name, []))
            QUEUE_DEPTH.labels(queue=name).set(depth)
            QUEUE_OLDEST_AGE.labels(queue=name).set(oldest)
            QUEUE_CONSUMERS.labels(queue=name).set(live)
            QUEUE_WAITING_WITHOUT_CONSUMER.labels(queue=name).set(depth if live == 0 else 0)

    def _oldest_age(self, queue: str, tail: list[Any], now: float) -> float:
        if not tail:
            self._first_seen.pop(queue, None)
            return 0.0
        for raw in reversed(tail):  # index -1 (the oldest) first
            created = message_created_s(raw)
            if created is not None:
                self._first_seen.pop(queue, None)
                return max(0.0, now - created)
        oldest = tail[-1]
        seen = self._first_seen.get(queue)
        if seen is None or seen[0] != oldest:
            seen = self._first_seen[queue] = (oldest, now)
        return now - seen[1]


def install_metrics(app: FastAPI) -> None:
    """Add the request metrics middleware and ``GET /metrics``."""
    app.add_middleware(MetricsMiddleware)
    sampler = QueueSampler()

    @app.get(
        "/metrics",
        tags=["ops"],
        dependencies=[Depends(require_metrics_token)],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_PLAIN_0_0_4: {}}, "description": "Prometheus text format 0.0.4"}},
    )
    async def metrics(request: Request) -> Response:
        """Prometheus metrics: HTTP requests and latency by route, jobs created, and per queue its depth,
        the age of its oldest job, its live consumers and the jobs waiting with none."""
        await sampler.sample(request.app.state.mlqueue)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_PLAIN_0_0_4)
