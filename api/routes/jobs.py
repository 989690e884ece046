"""Job routes: create, read, list, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from api.deps import StateDep
from api.submission import create_job as submit
from api.submission import parse_prefer_wait, read_submission, wait_for_terminal
from shared.jobs import JobCreate, JobPublic, JobsPublic, JobStatus

router = APIRouter(prefix="/v1", tags=["jobs"])

JOB_CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": JobCreate.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "JPEG, PNG, WebP, BMP or GIF"},
                        "version": {"type": "integer", "minimum": 1},
                    },
                }
            },
        },
    }
}


@router.post(
    "/models/{model}/jobs",
    status_code=202,
    response_model=JobPublic,
    openapi_extra=JOB_CREATE_BODY,
    responses={200: {"model": JobPublic, "description": "finished within `Prefer: wait`"}},
)
async def create_job(
    model: str,
    request: Request,
    response: Response,
    state: StateDep,
    prefer: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobPublic:
    """Submit one prediction; answers 202 at once, or 200 if it finishes within `Prefer: wait=N`."""
    submission = await read_submission(request, state.settings.max_body_bytes)
    job, created = await submit(state, model, submission, idempotency_key)
    wait_s = parse_prefer_wait(prefer, state.settings.max_wait_s)
    if wait_s:
        job = await wait_for_terminal(state, job, wait_s)
        response.headers["Preference-Applied"] = f"wait={wait_s}"
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if job.status.is_terminal():
        response.status_code = 200
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return JobPublic.from_job(job)


@router.get(
    "/jobs/{job_id}",
    response_model=JobPublic,
    responses={404: {"description": "never seen"}, 410: {"description": "expired (tombstone)"}},
)
async def read_job(job_id: str, state: StateDep) -> JobPublic:
    """Read a job: 404 for an id never seen, 410 for one whose data expired."""
    return JobPublic.from_job(await state.store.get(job_id))


@router.get("/jobs", response_model=JobsPublic)
async def list_jobs(
    state: StateDep,
    status: JobStatus | None = None,
    model: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=64, pattern=r"^[0-9A-Z]+$")] = None,
) -> JobsPublic:
    """List jobs, newest first; pass `next_cursor` back as `cursor` for the next page."""
    jobs, next_cursor = await state.store.list(status=status, model=model, limit=limit, cursor=cursor)
    return JobsPublic(jobs=[JobPublic.from_job(j) for j in jobs], next_cursor=next_cursor)


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic, responses={409: {"description": "already finished"}})
async def cancel_job(job_id: str, state: StateDep) -> JobPublic:
    """Cancel a queued or running job; a finished one answers 409."""
    return JobPublic.from_job(await state.store.cancel(job_id))
