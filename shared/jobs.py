"""The job: its states, its stored record and its public JSON shape."""

from __future__ import annotations

import os
import time
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


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
    output: Any = None
    error: JobError | None = None
    progress: JobProgress | None = None
    metrics: JobMetrics = Field(default_factory=JobMetrics)
    request_hash: str | None = None


class JobUrls(BaseModel):
    get: str
    cancel: str


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
    output: Any
    error: JobError | None
    progress: JobProgress | None
    metrics: JobMetrics
    urls: JobUrls

    @classmethod
    def from_job(cls, job: Job) -> JobPublic:
        base = f"/v1/jobs/{job.id}"
        return cls(
            **job.model_dump(exclude={"request_hash", "queue"}),
            urls=JobUrls(get=base, cancel=f"{base}/cancel"),
        )


class JobsPublic(BaseModel):
    jobs: list[JobPublic]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next, older page.")


class ExpiredJob(BaseModel):
    """The tombstone answer for a job whose data aged out."""

    id: str
    status: JobStatus = JobStatus.EXPIRED
    detail: str = "this job's data has expired"
    code: str = "expired"


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_job_id(now_s: float | None = None) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, so ids sort by creation time."""
    ms = int((time.time() if now_s is None else now_s) * 1000)
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def min_job_id_at(epoch_s: float) -> str:
    """The smallest id a job created at ``epoch_s`` can have (for trimming time-ordered indexes)."""
    value = int(epoch_s * 1000) << 80
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


class JobCreate(BaseModel):
    """The JSON body of ``POST /v1/models/{model}/jobs``."""

    model_config = {"extra": "forbid"}

    input: Any = Field(..., description="A named object of features or a positional array.")
    version: int | None = Field(None, ge=1, description="Pin a model version; the newest serves otherwise.")
