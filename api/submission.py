"""Creating jobs: parse the request, validate against the manifest, write the record, send the tasks.

Single jobs and batches share every step but the input handling. A single job's record, place in
line and ticket are written in one Redis transaction (``api.group_commit``): all of them or none
(and a 503). A batch's record is written first, then its chunks' inputs, places and tickets; if
those cannot be written, the batch fails with ``enqueue_failed`` and the request answers 503.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import Request
from pydantic import ValidationError

from api.backlog import info
from api.body import Form, Upload, media_type, read_form, read_json
from api.decoding import decode_within_budget
from api.deps import ApiState
from api.lifecycle import await_terminal, notify, wait_for_terminal
from api.metrics import record_job_created
from api.security import Principal
from shared import cache
from shared.batch_store import BatchItems, chunk_bounds
from shared.cache import cache_key
from shared.celery_messages import ticket_message
from shared.durations import parse_duration
from shared.errors import (
    BadRequest,
    ErrorCode,
    InvalidInput,
    MlqueueError,
    PayloadTooLarge,
    Unavailable,
    UnsupportedMediaType,
)
from shared.fastjson import JsonValue
from shared.jobs import (
    VERSION_MAX,
    BatchCreate,
    Job,
    JobCreate,
    JobKind,
    JobMetrics,
    JobProgress,
    JobStatus,
    QueueInfo,
    SubmitOptions,
    WebhookEvent,
    WebhookSpec,
    new_job_id,
)
from shared.logging import request_id_var
from shared.manifests import ImageInput, ModelManifest, validate_features
from shared.routing import ALIAS_RE
from shared.scheduler import Priority, Work, chunk_member
from shared.ssrf import check_url
from shared.store import Enqueue, NewJob, SubmittedInput

log = logging.getLogger(__name__)

# RFC 7240 ``wait=N``: ASCII digits only (``\d`` takes other scripts' digits), at most 6 of them
# (Python's ``int`` refuses 4,300+ digits), as a whole token: ``wait=1e9`` is not ``wait=1``.
_WAIT_RE = re.compile(r'(?:^|[,;\s])wait\s*=\s*("?)([0-9]{1,6})\1\s*(?:$|[,;])')
RESOLVE_TIMEOUT_S = 5.0
FORM_FIELDS = {"version", "webhook", "webhook_events_filter", "priority"}
TICKETS_PER_BATCH = 8  # a batch wakes this many workers at most; each drains the line while work remains


@dataclass
class Submission:
    """One request to create a job: from a JSON body or a multipart upload, single or batch."""

    version: int | str | None = None  # a number or an alias (``shared.routing``)
    input: JsonValue = None  # single JSON job
    inputs: list[JsonValue] | None = None  # JSON batch
    images: list[Upload] = field(default_factory=list)
    webhook: str | None = None
    webhook_events: list[WebhookEvent] | None = None
    priority: Priority | None = None  # as asked; ``Options.priority_for`` decides
    fingerprint: str = ""  # what Idempotency-Key compares


@dataclass
class Options:
    """Request headers that shape a job."""

    idempotency_key: str | None = None
    cancel_after_s: float | None = None
    owner: str | None = None  # the API key creating the job
    wait_s: float = 0  # Prefer: wait
    principal: Principal | None = None  # who submits: fair-share key, weight, priorities

    @property
    def share_key(self) -> str:
        """Whose share of the queue the job counts against: the API key, or the client's address."""
        return self.principal.client if self.principal else "-"

    @property
    def weight(self) -> float:
        return self.principal.weight if self.principal else 1.0

    def priority_for(self, requested: Priority | None) -> Priority:
        return self.principal.priority_for(requested) if self.principal else requested or Priority.NORMAL

    @property
    def idempotency_scope(self) -> str | None:
        """Keys are per API key: two clients choosing the same key never collide."""
        return None if self.idempotency_key is None else f"{self.owner or '-'}:{self.idempotency_key}"


def parse_prefer_wait(header: str | None, max_wait_s: int) -> int:
    """``Prefer: wait=N`` (RFC 7240), clamped to the configured maximum. A preference the server
    cannot read (``wait=1e9``, ``wait=-1``, 7+ digits) is ignored, as RFC 7240 says: 0, no wait."""
    match = _WAIT_RE.search(header or "")
    return min(int(match.group(2)), max_wait_s) if match else 0


IDEMPOTENCY_KEY_MAX = 255
_IDEMPOTENCY_KEY_RE = re.compile(rf"[\x21-\x7e][\x20-\x7e]{{0,{IDEMPOTENCY_KEY_MAX - 1}}}")


def parse_idempotency_key(header: str | None) -> str | None:
    """``Idempotency-Key``: 1 to 255 printable ASCII characters (it becomes part of a Redis key and
    is compared byte for byte, so what a client means by it must be what it sent). 400 otherwise."""
    if header is None:
        return None
    if not _IDEMPOTENCY_KEY_RE.fullmatch(header):
        raise BadRequest(
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters",
            code=ErrorCode.INVALID_HEADER,
        )
    return header


def parse_cancel_after(header: str | None, max_s: float) -> float | None:
    """``Cancel-After`` in seconds, at most ``max_s`` (the job TTL: a deadline past the job's own
    expiry means nothing, and an unbounded one overflows a date). 400 otherwise, nothing written."""
    if header is None:
        return None
    try:
        seconds = parse_duration(header)
    except ValueError as exc:
        raise BadRequest(f"Cancel-After: {exc}", code=ErrorCode.INVALID_HEADER) from exc
    if seconds <= 0:
        raise BadRequest("Cancel-After must be positive", code=ErrorCode.INVALID_HEADER)
    if seconds > max_s:
        raise BadRequest(f"Cancel-After must be at most {max_s:g}s (the job retention)", code=ErrorCode.INVALID_HEADER)
    return seconds


async def read_submission(request: Request, state: ApiState, *, batch: bool) -> Submission:
    """A JSON body (tabular models) or a multipart upload (image models: ``file`` or ``files``)."""
    settings = state.settings
    limit = settings.max_batch_body_bytes if batch else settings.max_body_bytes
    if media_type(request) == "multipart/form-data":
        file_field, max_files = ("files", settings.max_batch_rows) if batch else ("file", 1)
        form = await read_form(request, limit, file_field=file_field, max_files=max_files)
        sub = _form_submission(form, file_field)
    else:
        body = await read_json(request, limit)
        sub = _json_submission(body, BatchCreate if batch else JobCreate)
    sub.fingerprint = hashlib.sha256(await request.body()).hexdigest()
    return sub


def _json_submission(body: JsonValue, schema: type[SubmitOptions]) -> Submission:
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object", code=ErrorCode.INVALID_REQUEST)
    request = _validated(schema, body)
    return Submission(
        version=request.version,
        input=getattr(request, "input", None),
        inputs=getattr(request, "inputs", None),
        webhook=request.webhook,
        webhook_events=request.webhook_events_filter,
        priority=request.priority,
    )


def _validated(schema: type[SubmitOptions], data: dict[str, Any]) -> SubmitOptions:
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(f"{where}: {first['msg']}", code=ErrorCode.INVALID_REQUEST) from exc


def parse_version(text: str) -> int | str:
    """A form's ``version``: a number, ASCII digits only (``str.isdigit`` takes ``²``, which ``int``
    refuses), a bounded number of them; or an alias name (``staging``). The model then bounds it,
    as for JSON."""
    if ALIAS_RE.fullmatch(text):
        return text
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(VERSION_MAX))):
        raise InvalidInput(
            f"version must be an integer from 1 to {VERSION_MAX} or an alias name", code=ErrorCode.INVALID_REQUEST
        )
    return int(text)


def _form_submission(form: Form, file_field: str) -> Submission:
    fields = form.fields
    if not form.uploads:
        raise InvalidInput(
            f"multipart request has no file: send images as the form field '{file_field}'", code=ErrorCode.FILE_REQUIRED
        )
    unknown = sorted(set(fields) - FORM_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown form fields: {', '.join(u[:50] for u in unknown)}", code=ErrorCode.INVALID_REQUEST)
    data: dict[str, Any] = {k: v for k, v in fields.items() if k in ("webhook", "priority")}
    if "version" in fields:
        data["version"] = parse_version(fields["version"])
    if "webhook_events_filter" in fields:
        data["webhook_events_filter"] = [e.strip() for e in fields["webhook_events_filter"].split(",") if e.strip()]
    options = _validated(SubmitOptions, data)
    return Submission(
        version=options.version,
        images=form.uploads,
        webhook=options.webhook,
        webhook_events=options.webhook_events_filter,
        priority=options.priority,
    )


async def check_webhook(state: ApiState, sub: Submission) -> WebhookSpec | None:
    """The SSRF guard at submission: a URL that resolves to a private address is a 422 now, not a
    silent failure later (delivery checks again, and connects to the address it checked)."""
    if sub.webhook is None:
        return None
    if not state.settings.webhook_secret:
        raise InvalidInput(
            "webhooks are not configured on this server (MLQUEUE_WEBHOOK_SECRET)",
            code=ErrorCode.WEBHOOKS_NOT_CONFIGURED,
        )
    try:
        with anyio.fail_after(RESOLVE_TIMEOUT_S):
            await anyio.to_thread.run_sync(
                functools.partial(check_url, sub.webhook, allow_private=state.settings.webhook_allow_private),
                abandon_on_cancel=True,
            )
    except TimeoutError as exc:
        raise InvalidInput("webhook host did not resolve in time", code=ErrorCode.WEBHOOK_URL_REFUSED) from exc
    events = sub.webhook_events if sub.webhook_events is not None else list(WebhookEvent)
    return WebhookSpec(url=sub.webhook, events=sorted({*events, WebhookEvent.COMPLETED}))


async def new_job(
    state: ApiState,
    model: str,
    sub: Submission,
    options: Options,
    **fields: Any,  # more Job fields
) -> tuple[ModelManifest, Job]:
    """Resolve the version and build the record (not yet written)."""
    manifest = await state.fleet.resolve(state.repository, model, sub.version)
    now = time.time()
    job = Job(
        id=new_job_id(now),
        model=manifest.name,
        version=manifest.version,
        queue=await state.fleet.queue_for(manifest),
        created_at=now,
        request_hash=sub.fingerprint if options.idempotency_key else None,
        webhook=await check_webhook(state, sub),
        deadline_at=now + options.cancel_after_s if options.cancel_after_s else None,
        owner=options.owner,
        priority=options.priority_for(sub.priority),
        request_id=request_id_var.get(),
        **fields,
    )
    return manifest, job


async def decode_image(state: ApiState, manifest: ModelManifest, data: bytes) -> bytes:
    """Decode and resize once, here, so workers receive ready pixels (the claim check)."""
    assert isinstance(manifest.input, ImageInput)
    return await decode_within_budget(
        state.pixel_budget,
        data,
        width=manifest.input.width,
        height=manifest.input.height,
        max_pixels=state.settings.max_image_pixels,
    )


def check_input_kind(manifest: ModelManifest, sub: Submission) -> None:
    if isinstance(manifest.input, ImageInput) and not sub.images:
        raise UnsupportedMediaType(
            f"model {manifest.name} takes images: send multipart/form-data", code=ErrorCode.IMAGE_REQUIRED
        )
    if not isinstance(manifest.input, ImageInput) and sub.images:
        raise UnsupportedMediaType(
            f"model {manifest.name} takes JSON input, not a file upload", code=ErrorCode.JSON_REQUIRED
        )


@dataclass(frozen=True)
class Created:
    """What a submission answers: the job, whether this request created it (an Idempotency-Key
    replay did not), and its place in line when it was queued."""

    job: Job
    created: bool
    queue: QueueInfo | None = None


async def create_job(
    state: ApiState,
    model: str,
    sub: Submission,
    options: Options,
    prepared: SubmittedInput | None = None,
    retry_of: str | None = None,
) -> Created:
    """One prediction. An Idempotency-Key replay returns the first job. ``prepared``: an image's
    record input and decoded pixels already (a retry's), instead of the submission's file."""
    manifest, job = await new_job(state, model, sub, options, retry_of=retry_of)
    if prepared is None:
        check_input_kind(manifest, sub)
    blob = None
    if prepared is not None:
        job_input, blob = prepared.value, prepared.pixels
        normalized: JsonValue | bytes = blob  # what the cache key hashes
    elif sub.images:
        upload = sub.images[0]
        blob = await decode_image(state, manifest, upload.data)
        job_input = {"filename": upload.filename[:200], "bytes": len(upload.data)}
        normalized = blob
    else:
        normalized = validate_features(manifest, sub.input)
        job_input = sub.input
    if manifest.deterministic and state.settings.cache_ttl_s:
        key = cache_key(manifest.name, manifest.version, normalized)
        output = await cache.lookup(state.redis, key, manifest.name)
        if output is not None:
            return await create_cached(state, job, output, options)
        job.cache_key = key
    await state.backlog.admit(job.queue, options.share_key, options.weight, 1)
    place = None
    with state.events.subscribe(job.id) as events:  # before the job exists: no event can be missed
        scope = options.idempotency_scope
        existing = await state.store.claim_idempotency(job, scope) if scope is not None else None
        created = existing is None
        if existing is not None:
            job = existing
        else:  # written with the jobs submitted at the same time (api.group_commit)
            work = Work(job.id, options.share_key, job.priority, 1, options.weight)
            place = await state.groups.create(NewJob(job, job_input, blob), work, request_id_var.get())
            log.info("job.enqueued model=%s version=%s queue=%s", job.model, job.version, job.queue)
            record_job_created(job.model, job.kind.value)
            if options.wait_s:
                job = await await_terminal(state, job, events, options.wait_s)
    if not created and options.wait_s:
        job = await wait_for_terminal(state, job, options.wait_s)
    return Created(job, created, place)


async def create_cached(state: ApiState, job: Job, output: JsonValue, options: Options) -> Created:
    """A cache hit: the job is written already succeeded and no task is sent."""
    now = time.time()
    total_ms = round((now - job.created_at) * 1000, 3)
    job = job.model_copy(
        update={
            "status": JobStatus.SUCCEEDED,
            "output": output,
            "cached": True,
            "started_at": job.created_at,
            "completed_at": now,
            "metrics": JobMetrics(queue_ms=0.0, predict_ms=0.0, total_ms=total_ms),
        }
    )
    recorded = await state.store.create(job, None, options.idempotency_scope)
    job = recorded.job
    if recorded.created:
        record_job_created(job.model, job.kind.value)
        await notify(state, job, WebhookEvent.COMPLETED)
    return Created(job, recorded.created)


async def create_batch(
    state: ApiState,
    model: str,
    sub: Submission,
    options: Options,
    prepared: BatchItems | None = None,
    retry_of: str | None = None,
) -> Created:
    """Many inputs as one job, split into chunks that workers run in parallel. Rows are checked
    one by one by the workers: a bad row fails that item, not the batch. ``prepared``: rows and
    decoded images already (a retry's), instead of the submission's."""
    total = len(prepared.rows) if prepared else len(sub.images) or len(sub.inputs or ())
    if total > state.settings.max_batch_rows:
        raise PayloadTooLarge(
            f"a batch holds at most {state.settings.max_batch_rows} items, got {total}", code=ErrorCode.BATCH_TOO_LARGE
        )
    is_image = bool(sub.images) or bool(prepared and any(_is_image_row(row) for row in prepared.rows))
    chunk_size = state.settings.batch_chunk_images if is_image else state.settings.batch_chunk_rows
    bounds = chunk_bounds(total, chunk_size)
    manifest, job = await new_job(
        state,
        model,
        sub,
        options,
        kind=JobKind.BATCH,
        progress=JobProgress(total=total),
        chunks=len(bounds),
        chunk_size=chunk_size,
        retry_of=retry_of,
    )
    if prepared is None:
        check_input_kind(manifest, sub)
    await state.backlog.admit(job.queue, options.share_key, options.weight, len(bounds))
    batch_items = prepared or await _batch_rows(state, manifest, sub)
    recorded = await state.store.create(job, None, options.idempotency_scope)
    job = recorded.job
    if not recorded.created:
        return Created(await wait_for_terminal(state, job, options.wait_s), False)
    headers = request_headers()
    tickets = [ticket_message(state.publisher, job.queue, headers) for _ in range(min(len(bounds), TICKETS_PER_BATCH))]
    items = [
        Work(chunk_member(job.id, c), options.share_key, job.priority, b - a, options.weight)
        for c, (a, b) in enumerate(bounds)
    ]
    try:
        chunks = (batch_items.rows[a:b] for a, b in bounds)
        ranked = await state.batches.write_inputs(
            job.id, chunks, batch_items.images, Enqueue(job.queue, items, tickets)
        )
    except Exception as exc:
        with contextlib.suppress(Exception):  # Redis is likely down: the 503 is what matters
            await state.store.fail_unsent(job.id, "the batch inputs could not be stored")
        raise Unavailable("the job store is unavailable; retry later", code=ErrorCode.STORE_UNAVAILABLE) from exc
    log.info("batch.enqueued model=%s version=%s items=%s chunks=%s", job.model, job.version, total, len(bounds))
    record_job_created(job.model, job.kind.value)
    job = await wait_for_terminal(state, job, options.wait_s)
    return Created(job, True, info(ranked.ahead[0], ranked.drain_rate))


def _is_image_row(row: JsonValue) -> bool:
    return isinstance(row, dict) and "image" in row


async def _batch_rows(state: ApiState, manifest: ModelManifest, sub: Submission) -> BatchItems:
    """JSON rows as they are; images decoded now (one that fails becomes that item's error)."""
    if not sub.images:
        return BatchItems(list(sub.inputs or ()))
    rows: list[JsonValue] = []
    images: dict[int, bytes] = {}
    for index, upload in enumerate(sub.images):
        try:
            images[index] = await decode_image(state, manifest, upload.data)
            rows.append({"image": index})
        except MlqueueError as exc:
            rows.append({"error": {"code": exc.code, "message": exc.detail}})
    return BatchItems(rows, images)


def request_headers() -> dict[str, Any]:
    """Task headers from the request: its id, so the worker's logs carry it."""
    return {"request_id": request_id_var.get()}
