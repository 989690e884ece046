"""The API's Prometheus metrics, in a registry of its own: every series ``GET /metrics`` exports.

- HTTP: requests and latency by method, route *template* (``/v1/jobs/{job_id}``, never the raw path,
  so the number of series stays bounded) and status, recorded by a pure ASGI middleware (a
  ``BaseHTTPMiddleware`` would buffer and break SSE and NDJSON streams).
- Jobs created, by model and kind (``record_job_created``, called by the submission code).
- Per queue, read from Redis at scrape time: depth, age of the oldest queued message, live
  consumers, and messages waiting with no live consumer: the signals to autoscale workers on
  (KEDA, HPA external metrics, SageMaker's ``ApproximateBacklogSize``/``HasBacklogWithoutCapacity``).

One registry per API process: with several API processes, Prometheus scrapes each of them (the
queue gauges then agree across processes; sum the counters). What fills them: ``api.http_metrics``
(the middleware), ``api.queue_metrics`` (the sampler, at scrape time), ``record_job_created``
below; ``api.routes.metrics`` serves them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

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


def record_job_created(model: str, kind: str) -> None:
    """Count one created job (call it once per job actually created, not for idempotent replays)."""
    JOBS_CREATED.labels(model=model, kind=kind).inc()
