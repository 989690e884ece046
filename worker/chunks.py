"""Running one chunk of a batch job: validate each row, one forward pass, record results in order.

The chunks' inputs and results live in ``shared.batch_store``; the forward pass goes through the
model's micro-batcher (``worker.micro_batching``) like a single job's.

A bad row fails that item, not the batch: any exception while preparing a row becomes that row's
error, so a batch always finishes. A chunk redelivered after a crash is counted once (the
chunk-done set), and chunks of a canceled batch do not run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from shared.errors import ErrorCode, MlqueueError
from shared.fastjson import JsonValue, dumps_strict
from shared.jobs import Job, WebhookEvent, deadline_transition
from shared.logging import bound
from shared.manifests import ImageInput
from shared.redis_keys import progress_key
from worker import metrics as worker_metrics
from worker.context import WorkerContext
from worker.execution import begin, notify
from worker.runtime import LoadedModel

log = logging.getLogger(__name__)

PROGRESS_EVERY_MS = 500  # job.progress webhooks: at most one per job per 500 ms


@dataclass(frozen=True)
class ChunkLines:
    """A chunk's results as stored: one NDJSON line per row in input order, the failed items, and
    the milliseconds of the forward pass."""

    lines: list[str]
    failures: list[dict[str, Any]]
    predict_ms: float


@dataclass(frozen=True)
class RowResults:
    """One result item per row, in order (``{"status": "succeeded", "output"}`` or ``failed(...)``),
    and the milliseconds of the forward pass."""

    results: list[dict[str, Any]]
    predict_ms: float


def failed(code: ErrorCode, message: str) -> dict[str, Any]:
    return {"status": "failed", "error": {"code": code, "message": message}}


def run_chunk(job_id: str, chunk: int, ctx: WorkerContext) -> None:
    started = begin(ctx, job_id)
    if started is None or ctx.batches.is_done(job_id, chunk):
        return
    job = started.job
    with bound(job_id, job.request_id):  # every line of this chunk names its batch and its request
        _run_chunk(ctx, job, chunk)


def _run_chunk(ctx: WorkerContext, job: Job, chunk: int) -> None:
    job_id = job.id
    rows = ctx.batches.read_inputs(job_id, chunk)
    if rows is None:
        return  # done by another delivery meanwhile
    start = chunk * (job.chunk_size or 0)
    image_indexes = [start + i for i, row in enumerate(rows) if "error" not in row] if _is_image(ctx, job) else []
    out = predict_lines(ctx, job, rows, start, image_indexes)

    deadline = deadline_transition(job, time.time())  # job is running here: past it, the batch is canceled
    if deadline is not None and ctx.store.transition(job_id, deadline.allowed, deadline.fields):
        notify(ctx, job, WebhookEvent.COMPLETED)
        return
    recorded = ctx.batches.complete_chunk(job_id, chunk, out.lines, len(out.failures), out.predict_ms, image_indexes)
    worker_metrics.record_chunk(job.model, out.failures, recorded)
    if not recorded.counted:
        log.info("batch.chunk_dropped chunk=%s status=%s", chunk, recorded.status)
    elif recorded.final:
        log.info("batch.%s", recorded.status)
        notify(ctx, job, WebhookEvent.COMPLETED)
    elif ctx.store.r.set(progress_key(job_id), 1, nx=True, px=PROGRESS_EVERY_MS):
        notify(ctx, job, WebhookEvent.PROGRESS)


def _is_image(ctx: WorkerContext, job: Job) -> bool:
    manifest = ctx.runtime.repository.models().get(job.model, {}).get(job.version)
    return manifest is not None and isinstance(manifest.input, ImageInput)


def predict_lines(
    ctx: WorkerContext, job: Job, rows: list[JsonValue], start: int, image_indexes: list[int]
) -> ChunkLines:
    """Each row's result item as one NDJSON line, in input order (the first has index ``start``)."""
    try:
        model = ctx.runtime.get(job.model, job.version)
    except MlqueueError as exc:
        out = RowResults([failed(exc.code, exc.detail)] * len(rows), 0.0)
    else:
        fast = None if image_indexes else _fast_lines(model, rows, start)
        if fast is not None:
            return fast
        out = predict_rows(ctx, job, model, rows, image_indexes)
    lines = [dumps_strict({"index": start + i, **result}) for i, result in enumerate(out.results)]
    return ChunkLines(lines, [result for result in out.results if result["status"] == "failed"], out.predict_ms)


def _fast_lines(model: LoadedModel, rows: list[JsonValue], start: int) -> ChunkLines | None:
    """The common batch, every row valid and positional, when the family offers it (``prepare_many``
    and ``predict_json``): validated in one pass, outputs formatted from the model's arrays. None
    when it does not apply, and the rows go the general way, which names each bad row."""
    predictor = model.predictor
    prepare_many, predict_json = getattr(predictor, "prepare_many", None), getattr(predictor, "predict_json", None)
    if prepare_many is None or predict_json is None:
        return None
    try:
        prepared = prepare_many(rows)
    except Exception:  # noqa: BLE001 - a row it cannot read (an int beyond a float): the general path names it
        return None
    if prepared is None:
        return None
    try:
        outputs, predict_ms = model.batcher.run_whole(len(prepared), lambda: predict_json(prepared))
    except Exception:  # the general path finds the item that broke the pass
        log.warning("batch.fast_path_failed model=%s", predictor.manifest.name, exc_info=True)
        return None
    lines = [f'{{"index":{start + i},"status":"succeeded","output":{output}}}' for i, output in enumerate(outputs)]
    return ChunkLines(lines, [], predict_ms)


def predict_rows(
    ctx: WorkerContext, job: Job, model: LoadedModel, rows: list[JsonValue], image_indexes: list[int]
) -> RowResults:
    """One result per row, in order."""
    if image_indexes:  # image rows are claim checks; rows with an "error" failed to decode in the API
        pixels = iter(ctx.batches.read_images(job.id, image_indexes))
        rows = [row if "error" in row else next(pixels) for row in rows]
    results: list[dict[str, Any]] = [{} for _ in rows]  # every slot is filled below
    inputs: list[JsonValue | bytes | None] = []  # an image row's pixels are bytes (None once expired)
    positions: list[int] = []
    for i, row in enumerate(rows):
        if isinstance(row, dict) and set(row) == {"error"}:
            results[i] = {"status": "failed", "error": row["error"]}
        else:
            inputs.append(row)
            positions.append(i)
    outputs, predict_ms = model.predict_many(inputs) if inputs else ([], 0.0)
    for i, output in zip(positions, outputs, strict=True):
        if isinstance(output, MlqueueError):
            results[i] = failed(output.code, output.detail)
        elif isinstance(output, BaseException):
            results[i] = failed(ErrorCode.MODEL_ERROR, f"{type(output).__name__}: {output}")
        else:
            results[i] = {"status": "succeeded", "output": output}
    return RowResults(results, predict_ms)
