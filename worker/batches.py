"""Running one chunk of a batch job: validate each row, one forward pass, record results in order.

A bad row fails that item, not the batch. A chunk redelivered after a crash is counted once (the
chunk-done set), and chunks of a canceled batch do not run.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from shared.errors import MlqueueError
from shared.jobs import Job, WebhookEvent, deadline_transition
from shared.manifests import ImageInput
from shared.store import PREFIX
from worker import metrics as worker_metrics
from worker.context import WorkerContext
from worker.execution import begin, notify

log = logging.getLogger(__name__)

PROGRESS_EVERY_MS = 500  # job.progress webhooks: at most one per job per 500 ms


def failed(code: str, message: str) -> dict[str, Any]:
    return {"status": "failed", "error": {"code": code, "message": message}}


def run_chunk(job_id: str, chunk: int, ctx: WorkerContext) -> None:
    started = begin(ctx, job_id)
    if started is None or ctx.batches.is_done(job_id, chunk):
        return
    job = started[0]
    rows = ctx.batches.read_inputs(job_id, chunk)
    if rows is None:
        return  # done by another delivery meanwhile
    start = chunk * (job.chunk_size or 0)
    image_indexes = [start + i for i, row in enumerate(rows) if "error" not in row] if _is_image(ctx, job) else []
    results, predict_ms = predict_rows(ctx, job, rows, image_indexes)
    items = [{"index": start + i, **result} for i, result in enumerate(results)]

    deadline = deadline_transition(job, time.time())  # job is running here: past it, the batch is canceled
    if deadline is not None and ctx.store.transition(job_id, *deadline):
        notify(ctx, job, WebhookEvent.COMPLETED)
        return
    counted, final, status = ctx.batches.complete_chunk(job_id, chunk, items, predict_ms, image_indexes)
    worker_metrics.record_chunk(job.model, results, counted, final, status)
    if not counted:
        log.info("batch.chunk_dropped chunk=%s status=%s", chunk, status)
    elif final:
        log.info("batch.%s", status)
        notify(ctx, job, WebhookEvent.COMPLETED)
    elif ctx.store.r.set(f"{PREFIX}:webhook:progress:{job_id}", 1, nx=True, px=PROGRESS_EVERY_MS):
        notify(ctx, job, WebhookEvent.PROGRESS)


def _is_image(ctx: WorkerContext, job: Job) -> bool:
    manifest = ctx.runtime.repository.models().get(job.model, {}).get(job.version)
    return manifest is not None and isinstance(manifest.input, ImageInput)


def predict_rows(ctx: WorkerContext, job: Job, rows: list[Any], image_indexes: list[int]) -> tuple[list[dict], float]:
    """One result per row, in order: ``{"status": "succeeded", "output"}`` or ``failed(...)``."""
    try:
        model = ctx.runtime.get(job.model, job.version)
    except MlqueueError as exc:
        return [failed(exc.code, exc.detail)] * len(rows), 0.0
    if image_indexes:  # image rows are claim checks; rows with an "error" failed to decode in the API
        pixels = iter(ctx.batches.read_images(job.id, image_indexes))
        rows = [row if "error" in row else next(pixels) for row in rows]
    results: list[dict | None] = [None] * len(rows)
    prepare_many = getattr(model.predictor, "prepare_many", None)
    fast = prepare_many(rows) if prepare_many is not None and not image_indexes else None
    prepared, positions = (fast, range(len(rows))) if fast is not None else ([], [])
    for i, row in enumerate(rows if fast is None else ()):
        if isinstance(row, dict) and set(row) == {"error"}:
            results[i] = {"status": "failed", "error": row["error"]}
            continue
        try:
            if row is None:
                raise MlqueueError("the item's input has expired", code="input_missing")
            prepared.append(model.predictor.prepare(row))
            positions.append(i)
        except MlqueueError as exc:
            results[i] = failed(exc.code, exc.detail)
    outputs, predict_ms = model.batcher.run_many(prepared) if prepared else ([], 0.0)
    for i, output in zip(positions, outputs, strict=True):
        if isinstance(output, BaseException):
            results[i] = failed("model_error", f"{type(output).__name__}: {output}")
        else:
            results[i] = {"status": "succeeded", "output": output}
    return results, predict_ms
