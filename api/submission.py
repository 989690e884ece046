"""Creating a job: validate against the manifest, write the record, send the task, maybe wait."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import Request
from kombu.exceptions import OperationalError
from pydantic import ValidationError

from api.body import media_type, read_json, read_upload
from api.deps import ApiState
from shared.errors import InvalidInput, Unavailable, UnsupportedMediaType
from shared.images import preprocess_image
from shared.jobs import Job, JobCreate, JobStatus, new_job_id
from shared.manifests import ImageInput, ModelManifest, validate_features
from shared.queues import TaskName

log = logging.getLogger(__name__)

_WAIT_RE = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+)")
SEND_TIMEOUT_S = 5.0


def parse_prefer_wait(header: str | None, max_wait_s: int) -> int:
    """``Prefer: wait=N`` (RFC 7240), clamped to the configured maximum; absent or malformed = 0."""
    match = _WAIT_RE.search(header or "")
    return min(int(match.group(1)), max_wait_s) if match else 0


def parse_json_submission(body: Any) -> Submission:
    if not isinstance(body, dict):
        raise InvalidInput('body must be a JSON object like {"input": ...}', code="invalid_request")
    try:
        request = JobCreate.model_validate(body)
    except ValidationError as exc:
        raise InvalidInput(_describe(exc), code="invalid_request") from exc
    return Submission(version=request.version, input=request.input)


def parse_form_submission(fields: dict[str, str], upload: tuple[str, bytes] | None) -> Submission:
    if upload is None:
        raise InvalidInput(
            "multipart request has no file: send the image as the form field 'file'", code="file_required"
        )
    unknown = sorted(set(fields) - {"version"})
    if unknown:
        raise InvalidInput(f"unknown form fields: {', '.join(unknown)}", code="invalid_request")
    version = fields.get("version")
    if version is not None and not (version.isdigit() and int(version) >= 1):
        raise InvalidInput("version must be a positive integer", code="invalid_request")
    filename, data = upload
    return Submission(version=int(version) if version else None, image=data, filename=filename)


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


@dataclass
class Submission:
    """One prediction request, from a JSON body or a multipart upload."""

    version: int | None = None
    input: Any = None
    image: bytes | None = None
    filename: str | None = None

    def fingerprint(self, model: str) -> str:
        """What Idempotency-Key compares: same model, version and input (image bytes by hash)."""
        image = hashlib.sha256(self.image).hexdigest() if self.image is not None else None
        canonical = json.dumps(
            {"model": model, "version": self.version, "input": self.input, "image": image},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


async def read_submission(request: Request, limit: int) -> Submission:
    """A JSON body (tabular models) or a multipart upload with ``file=`` (image models)."""
    if media_type(request) == "multipart/form-data":
        return parse_form_submission(*await read_upload(request, limit))
    return parse_json_submission(await read_json(request, limit))


async def prepare_input(state: ApiState, manifest: ModelManifest, sub: Submission) -> tuple[Any, bytes | None]:
    """Check the input against the manifest; an image is decoded and resized here, once, so the
    worker receives ready pixels (the claim check) and never decodes."""
    if isinstance(manifest.input, ImageInput):
        if sub.image is None:
            raise UnsupportedMediaType(
                f"model {manifest.name} takes an image: send multipart/form-data with file=", code="image_required"
            )
        pixels = await anyio.to_thread.run_sync(
            functools.partial(
                preprocess_image,
                sub.image,
                width=manifest.input.width,
                height=manifest.input.height,
                max_pixels=state.settings.max_image_pixels,
            )
        )
        return {"filename": (sub.filename or "")[:200], "bytes": len(sub.image)}, pixels
    if sub.image is not None:
        raise UnsupportedMediaType(f"model {manifest.name} takes JSON input, not a file upload", code="json_required")
    validate_features(manifest, sub.input)
    return sub.input, None


async def create_job(state: ApiState, model: str, sub: Submission, idempotency_key: str | None) -> tuple[Job, bool]:
    """Validate, write the record, then send the task. Returns (job, created)."""
    manifest = await state.fleet.resolve(state.repository, model, sub.version)
    job_input, blob = await prepare_input(state, manifest, sub)
    job = Job(
        id=new_job_id(),
        model=manifest.name,
        version=manifest.version,
        queue=await state.fleet.queue_for(manifest),
        created_at=time.time(),
        request_hash=sub.fingerprint(model) if idempotency_key else None,
    )
    job, created = await state.store.create(job, job_input, idempotency_key, blob=blob)
    if created:
        await send_task(state, job)
        log.info("job.enqueued model=%s version=%s queue=%s", job.model, job.version, job.queue)
    return job, created


async def send_task(state: ApiState, job: Job) -> None:
    def send() -> None:
        state.publisher.send_task(TaskName.PREDICT, args=[job.id], queue=job.queue, task_id=job.id)

    try:
        with anyio.fail_after(SEND_TIMEOUT_S):
            await anyio.to_thread.run_sync(send, abandon_on_cancel=True)
    except (OperationalError, OSError, TimeoutError) as exc:
        log.error("job.enqueue_failed error=%s", exc)
        with contextlib.suppress(Exception):  # Redis is likely down too; the 503 is what matters
            await state.store.fail_unsent(job.id, "the broker could not be reached")
        raise Unavailable("the job queue is unavailable; retry later", code="broker_unavailable") from exc


async def wait_for_terminal(state: ApiState, job: Job, timeout_s: float) -> Job:
    """Hold until the job is terminal or the timeout passes, woken by events (no polling)."""
    if timeout_s <= 0 or job.status.is_terminal():
        return job
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    with state.events.subscribe(job.id) as events:
        job = await state.store.get(job.id)  # it may have finished before we subscribed
        while not job.status.is_terminal():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                event = await asyncio.wait_for(events.get(), remaining)
            except TimeoutError:
                break
            status = event.get("status")
            if event.get("resync") or (status and JobStatus(status).is_terminal()):
                job = await state.store.get(job.id)
    return job
