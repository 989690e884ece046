"""The job: its states, its stored record and its public JSON shape."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator

from shared.errors import ErrorCode
from shared.fastjson import JsonValue
from shared.routing import ALIAS_MAX, ALIAS_RE, AliasName
from shared.scheduler import Priority


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    ABORTED = "aborted"
    EXPIRED = "expired"  # only ever a tombstone's answer, never stored on a live job

    def is_terminal(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


TERMINAL_STATUSES = frozenset(s for s in JobStatus if s.is_terminal() and s is not JobStatus.EXPIRED)


class JobKind(StrEnum):
    SINGLE = "single"
    BATCH = "batch"


class JobError(BaseModel):
    code: str
    message: str


class JobMetrics(BaseModel):
    queue_ms: float | None = None
    predict_ms: float | None = None
    total_ms: float | None = None


class JobProgress(BaseModel):
    total: int = 0
    done: int = 0
    failed: int = 0


class WebhookEvent(StrEnum):
    STARTED = "job.started"
    PROGRESS = "job.progress"  # throttled: at most one per 500 ms per job
    COMPLETED = "job.completed"  # any terminal state; always sent


class WebhookSpec(BaseModel):
    url: str
    events: list[WebhookEvent] = Field(default_factory=lambda: list(WebhookEvent))

    def wants(self, event: WebhookEvent) -> bool:
        return event is WebhookEvent.COMPLETED or event in self.events


class WebhookDelivery(BaseModel):
    """One delivery attempt, as logged on the job."""

    webhook_id: str
    event: WebhookEvent
    attempt: int
    at: datetime
    status_code: int | None = None
    error: str | None = None
    duration_ms: float | None = None


class Job(BaseModel):
    """The stored record (minus the input, which is kept apart and never returned)."""

    id: str
    kind: JobKind = JobKind.SINGLE
    model: str
    version: int
    status: JobStatus = JobStatus.QUEUED
    queue: str
    created_at: float
    started_at: float | None = None
    completed_at: float | None = None
    output: JsonValue = None
    error: JobError | None = None
    progress: JobProgress | None = None
    metrics: JobMetrics = Field(default_factory=JobMetrics)
    request_hash: str | None = None
    webhook: WebhookSpec | None = None
    deliveries: list[WebhookDelivery] = []
    deadline_at: float | None = None  # Cancel-After: aborted if not started by then, canceled if running
    cached: bool = False
    worker: str | None = None  # the worker that ran it (the last one, after a redelivery)
    cache_key: str | None = None  # where the worker stores the output (deterministic models)
    owner: str | None = None  # the API key that created it (None when authentication is off)
    chunks: int | None = None  # batch jobs: how many chunks the inputs were split into
    chunk_size: int | None = None
    priority: Priority = Priority.NORMAL
    retry_of: str | None = None  # the job this one re-runs (POST /v1/jobs/{id}/retry)
    request_id: str | None = None  # of the request that created it: the worker's log lines carry it


@dataclass(frozen=True)
class StatusChange:
    """A compare-and-set to apply: ``fields`` set if the job's status is still one of ``allowed``."""

    allowed: tuple[JobStatus, ...]
    fields: dict[str, Any]


def deadline_transition(job: Job, now: float) -> StatusChange | None:
    """Cancel-After: a job not started by its deadline is ``aborted``; one still running is ``canceled``.
    None when the deadline does not apply."""
    if job.deadline_at is None or now < job.deadline_at or job.status.is_terminal():
        return None
    started = job.status is JobStatus.RUNNING
    return StatusChange(
        (job.status,),
        {
            "status": JobStatus.CANCELED if started else JobStatus.ABORTED,
            "completed_at": now,
            "error": {
                "code": ErrorCode.DEADLINE_EXCEEDED,
                "message": f"Cancel-After deadline passed {'while running' if started else 'before the job started'}",
            },
        },
    )


class JobUrls(BaseModel):
    get: str
    cancel: str
    events: str
    results: str | None = None


class QueueInfo(BaseModel):
    """Where a queued job stands: shown while it waits, from the scheduler's line."""

    position: int = Field(description="1 = the next to run in its model queue")
    eta_s: float | None = Field(
        description="seconds until it starts at the current drain rate; null while nothing drains"
    )


class WebhookPublic(BaseModel):
    url: str
    events: list[WebhookEvent]
    deliveries: list[WebhookDelivery]


class JobPublic(BaseModel):
    """A job as clients see it."""

    id: str
    kind: JobKind
    model: str
    version: int
    status: JobStatus
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    output: JsonValue
    error: JobError | None
    progress: JobProgress | None
    metrics: JobMetrics
    urls: JobUrls
    webhook: WebhookPublic | None = None
    deadline_at: datetime | None = None
    cached: bool = False
    worker: str | None = None
    priority: Priority = Priority.NORMAL
    retry_of: str | None = None
    queue: QueueInfo | None = None

    @classmethod
    def from_job(cls, job: Job, queue: QueueInfo | None = None) -> JobPublic:
        base = f"/v1/jobs/{job.id}"
        urls = JobUrls(
            get=base,
            cancel=f"{base}/cancel",
            events=f"{base}/events",
            results=f"{base}/results" if job.kind is JobKind.BATCH else None,
        )
        webhook = None
        if job.webhook is not None:
            webhook = WebhookPublic(url=job.webhook.url, events=job.webhook.events, deliveries=job.deliveries)
        return cls(
            **job.model_dump(
                exclude={
                    "request_hash",
                    "request_id",
                    "queue",
                    "webhook",
                    "deliveries",
                    "chunks",
                    "chunk_size",
                    "owner",
                    "cache_key",
                }
            ),
            urls=urls,
            webhook=webhook,
            queue=queue if job.status is JobStatus.QUEUED else None,
        )


class JobsPublic(BaseModel):
    jobs: list[JobPublic]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next, older page.")


class ExpiredJob(BaseModel):
    """The tombstone answer for a job whose data aged out."""

    id: str
    status: JobStatus = JobStatus.EXPIRED
    detail: str = "this job's data has expired"
    code: str = ErrorCode.EXPIRED


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_job_id(now_s: float | None = None) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, so ids sort by creation time."""
    ms = int((time.time() if now_s is None else now_s) * 1000)
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


# The shape ``new_job_id`` makes: 26 Crockford characters, the first at most 7 (128 bits in 130).
JOB_ID_PATTERN = r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$"
_JOB_ID_RE = re.compile(JOB_ID_PATTERN)


def is_job_id(value: str) -> bool:
    """Checked at the edge, before an id reaches a Redis key (``X:deliveries`` is another key's name)."""
    return _JOB_ID_RE.fullmatch(value) is not None


def min_job_id_at(epoch_s: float) -> str:
    """The smallest id a job created at ``epoch_s`` can have (for trimming time-ordered indexes)."""
    value = int(epoch_s * 1000) << 80
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def job_id_created_at(job_id: str) -> float | None:
    """When a job was created (epoch seconds), read from its id's first 10 characters; None when
    ``job_id`` is not such an id (any other string, e.g. a UUID, is refused, never misread)."""
    if len(job_id) != 26:
        return None
    ms = 0
    for char in job_id[:10]:
        digit = _CROCKFORD.find(char)
        if digit < 0:
            return None
        ms = (ms << 5) | digit
    return ms / 1000


# Bounds of the fields every submission carries, JSON body or multipart form alike (one definition).
VERSION_MAX = 1_000_000
WEBHOOK_URL_MAX = 2048


class SubmitOptions(BaseModel):
    """The fields a submission carries besides its input; the multipart form is validated by this
    model too, so both ways of submitting have the same bounds."""

    model_config = {"extra": "forbid"}

    # strict: ``true``, ``"2"`` and ``2.0`` are not versions; an alias starts with a letter
    version: Annotated[int, Field(ge=1, le=VERSION_MAX, strict=True)] | AliasName | None = Field(
        None,
        description="Pin a model version, by number or alias (`staging`); "
        "otherwise the traffic split, the `production` alias or the newest version serves.",
    )
    webhook: str | None = Field(None, max_length=WEBHOOK_URL_MAX, description="URL called with signed job events.")
    webhook_events_filter: list[WebhookEvent] | None = Field(
        None, description="Events to send; job.completed is always sent."
    )
    priority: Priority | None = Field(
        None, description="high, normal or low; the API key's default otherwise (and at most its ceiling)."
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_or_alias(cls, value: JsonValue) -> JsonValue:
        """One clear message for every wrong shape (the union would report its int branch only)."""
        number = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= VERSION_MAX
        if value is None or number or (isinstance(value, str) and ALIAS_RE.fullmatch(value)):
            return value
        raise ValueError(
            f"version must be an integer from 1 to {VERSION_MAX} or an alias "
            f"(a letter, then up to {ALIAS_MAX - 1} letters, digits, '_' or '-')"
        )


class JobCreate(SubmitOptions):
    """The JSON body of ``POST /v1/models/{model}/jobs``."""

    input: JsonValue = Field(..., description="A named object of features or a positional array.")


class BatchCreate(SubmitOptions):
    """The JSON body of ``POST /v1/models/{model}/batches``."""

    inputs: list[JsonValue] = Field(..., min_length=1, description="Rows, each as `input` of a single job.")
