"""The worker's Prometheus metrics, served on ``MLQUEUE_WORKER_METRICS_PORT`` (0 = off).

Inference latency and batch sizes per forward pass, queue wait, model load time, and outcomes:
``mlqueue_worker_jobs_total`` counts jobs (single and batch) by the terminal status this worker
gave them; ``mlqueue_worker_failures_total`` counts failed *predictions* by error code: a failed
single job, and each failed item of a batch (a bad row fails that item only, its batch still
succeeds, so the item is where the failure shows).

The registry is per process: with several worker processes on one machine, give each its own port.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server

from shared.batch_store import ChunkRecorded
from shared.manifests import ModelManifest

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, ...

UP = Gauge("mlqueue_worker_up", "1 while this worker process serves metrics.", registry=REGISTRY)
INFERENCE = Histogram(
    "mlqueue_worker_inference_seconds",
    "Duration of one forward pass (one batch of inputs).",
    ["model", "version"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "mlqueue_worker_batch_size",
    "Inputs per forward pass (micro-batched single jobs and batch chunks).",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "mlqueue_worker_queue_wait_seconds",
    "Time from a job's creation to its start on this worker.",
    ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
MODEL_LOAD = Gauge(
    "mlqueue_worker_model_load_seconds",
    "Time to verify, load and warm up the model version (last load on this worker).",
    ["model", "version"],
    registry=REGISTRY,
)
RECOVERED = Counter(
    "mlqueue_worker_messages_recovered_total",
    "Task messages the sweeper sent again (a worker died, or a message was lost in flight).",
    ["queue", "reason"],
    registry=REGISTRY,
)
JOBS = Counter(
    "mlqueue_worker_jobs_total",
    "Jobs this worker finished, by terminal status (canceled: a cancel landed while it ran).",
    ["model", "status"],
    registry=REGISTRY,
)
FAILURES = Counter(
    "mlqueue_worker_failures_total",
    "Failed predictions by error code: failed single jobs and failed items of batches.",
    ["model", "code"],
    registry=REGISTRY,
)

# Per model version, so a rollout (traffic split) can be judged: latency is
# ``mlqueue_worker_inference_seconds{model,version}``, these count outcomes and predicted labels.
PREDICTIONS = Counter(
    "mlqueue_worker_predictions_total",
    "Single-job predictions per model version, by outcome (succeeded | failed).",
    ["model", "version", "status"],
    registry=REGISTRY,
)
OUTPUTS = Counter(
    "mlqueue_worker_outputs_total",
    "Predicted labels per model version: the manifest's labels (first 50), unknown, anomaly | normal; "
    "anything else is counted as other.",
    ["model", "version", "label"],
    registry=REGISTRY,
)
MAX_LABELS = 50  # label values per model version, whatever a manifest lists

_server: WSGIServer | None = None


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` from a daemon thread. A port in use is logged, never fatal: metrics must
    not stop a worker from serving jobs."""
    global _server
    if _server is not None or not port:
        return
    try:
        _server, _ = start_http_server(port, addr=addr, registry=REGISTRY)
    except OSError as exc:
        log.error("metrics.server_failed addr=%s port=%s error=%s", addr, port, exc)
        return
    UP.set(1)
    log.info("metrics.serving addr=%s port=%s", addr, port)


def observe_forward_pass(manifest: ModelManifest, batch_size: int, seconds: float) -> None:
    INFERENCE.labels(model=manifest.name, version=str(manifest.version)).observe(seconds)
    BATCH_SIZE.labels(model=manifest.name).observe(batch_size)


def observe_model_load(manifest: ModelManifest, seconds: float) -> None:
    MODEL_LOAD.labels(model=manifest.name, version=str(manifest.version)).set(seconds)


def observe_queue_wait(model: str, seconds: float) -> None:
    QUEUE_WAIT.labels(model=model).observe(max(0.0, seconds))


def record_recovered(queue: str, reason: str) -> None:
    RECOVERED.labels(queue, reason).inc()


def record_job_finished(model: str, fields: Mapping[str, Any] | None) -> None:
    """A single job's final write: ``fields`` as written, or None when a cancel won (result dropped)."""
    if fields is None:
        JOBS.labels(model=model, status="canceled").inc()
        return
    status = str(getattr(fields["status"], "value", fields["status"]))
    JOBS.labels(model=model, status=status).inc()
    if status == "failed":
        FAILURES.labels(model=model, code=_code(fields.get("error"))).inc()


def record_chunk(model: str, results: Iterable[Mapping[str, Any]], recorded: ChunkRecorded) -> None:
    """A batch chunk recorded: its failed items by error code (once: a redelivered chunk that was
    already counted is not), and the batch's terminal status when this chunk was its last."""
    if not recorded.counted:
        return
    for result in results:
        if result.get("status") == "failed":
            FAILURES.labels(model=model, code=_code(result.get("error"))).inc()
    if recorded.final:
        JOBS.labels(model=model, status=str(recorded.status or "unknown")).inc()


def _code(error: object) -> str:
    code = error.get("code") if isinstance(error, Mapping) else None
    return code if isinstance(code, str) and code else "unknown"


def record_predictions(manifest: ModelManifest, results: Iterable[object]) -> None:
    """One forward pass's results (an output dict, or the exception that is the item's error)."""
    version = str(manifest.version)
    known = set(manifest.labels[:MAX_LABELS]) | {"unknown"}
    for result in results:
        if isinstance(result, BaseException) or not isinstance(result, Mapping):
            PREDICTIONS.labels(manifest.name, version, "failed").inc()
            continue
        PREDICTIONS.labels(manifest.name, version, "succeeded").inc()
        if "is_anomaly" in result:
            label = "anomaly" if result["is_anomaly"] else "normal"
        else:
            named = result.get("label")
            label = named if isinstance(named, str) and named in known else "other"
        OUTPUTS.labels(manifest.name, version, label).inc()
