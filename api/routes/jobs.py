"""Job routes: create, read, list, cancel, results, events, webhook redelivery."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from api.deps import StateDep
from api.lifecycle import cancel_job as cancel
from api.lifecycle import read_job as read
from api.lifecycle import redeliver
from api.openapi import body_ref, error_responses
from api.retry import retry_job as retry
from api.security import Principal, Scope, authorize
from api.streams import job_event_stream, results_page, results_stream
from api.submission import (
    Created,
    Options,
    parse_cancel_after,
    parse_idempotency_key,
    parse_prefer_wait,
    read_submission,
)
from api.submission import create_job as submit
from shared.durations import DURATION_PATTERN
from shared.jobs import JOB_ID_PATTERN, JobCreate, JobPublic, JobsPublic, JobStatus
from shared.manifests import MODEL_NAME_PATTERN

router = APIRouter(prefix="/v1", tags=["jobs"])
ERROR_CODE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
MAX_RESULTS_OFFSET = 10**9  # above any batch (max_batch_rows); a bigger int never reaches Redis


def upload_body(file_field: str, json_model: type[BaseModel], many: bool) -> dict[str, Any]:
    """OpenAPI for a body that is JSON (tabular models) or multipart images (image models)."""
    file_schema = {"type": "string", "format": "binary", "description": "JPEG, PNG, WebP, BMP or GIF"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": body_ref(json_model)},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [file_field],
                        "properties": {
                            file_field: {"type": "array", "items": file_schema} if many else file_schema,
                            "version": {"type": "integer", "minimum": 1},
                            "priority": {"type": "string", "enum": ["high", "normal", "low"]},
                            "webhook": {"type": "string"},
                            "webhook_events_filter": {"type": "string", "description": "comma-separated events"},
                        },
                    }
                },
            },
        }
    }


def options_from(
    state: StateDep, principal: Principal, prefer: str | None, idempotency_key: str | None, cancel_after: str | None
) -> Options:
    return Options(
        parse_idempotency_key(idempotency_key),
        parse_cancel_after(cancel_after, state.settings.job_ttl_s),
        principal.owner,
        parse_prefer_wait(prefer, state.settings.max_wait_s),
        principal,
    )


def respond(result: Created, response: Response, options: Options) -> JobPublic:
    """202 + Location, or 200 when the job finished within ``Prefer: wait``."""
    job, created = result.job, result.created
    if options.wait_s:
        response.headers["Preference-Applied"] = f"wait={options.wait_s}"
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if job.status.is_terminal():
        response.status_code = 200
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return JobPublic.from_job(job, result.queue)


PreferHeader = Annotated[str | None, Header(description="`wait=N`: hold up to N s for the result")]
IdempotencyHeader = Annotated[str | None, Header(description="1 to 255 printable ASCII characters")]
# The pattern documents the format only: ``parse_cancel_after`` checks it and answers 400 (not 422).
CancelAfterHeader = Annotated[
    str | None,
    Header(description="deadline, e.g. `30s`", json_schema_extra={"pattern": DURATION_PATTERN}),
]
# What a submission can answer besides the auth errors: bad content or header (400), unknown model
# (404), an Idempotency-Key conflict (409), too large (413), the wrong media type (415), schema (422).
SUBMIT_ERRORS = (400, 404, 409, 413, 415, 422)
Submitter = Annotated[Principal, Depends(authorize(Scope.SUBMIT))]
Reader = Annotated[Principal, Depends(authorize(Scope.READ))]
Admin = Annotated[Principal, Depends(authorize(Scope.ADMIN))]


@router.post(
    "/models/{model}/jobs",
    status_code=202,
    response_model=JobPublic,
    openapi_extra=upload_body("file", JobCreate, many=False),
    responses={
        200: {"model": JobPublic, "description": "finished within `Prefer: wait`"},
        **error_responses(*SUBMIT_ERRORS),
    },
)
async def create_job(
    model: str,
    request: Request,
    response: Response,
    state: StateDep,
    principal: Submitter,
    prefer: PreferHeader = None,
    idempotency_key: IdempotencyHeader = None,
    cancel_after: CancelAfterHeader = None,
) -> JobPublic:
    """Submit one prediction; answers 202 at once, or 200 if it finishes within `Prefer: wait=N`."""
    options = options_from(state, principal, prefer, idempotency_key, cancel_after)
    submission = await read_submission(request, state, batch=False)
    return respond(await submit(state, model, submission, options), response, options)


@router.get(
    "/jobs/{job_id}",
    response_model=JobPublic,
    responses=error_responses(404, 410, 422),
)
async def read_job(job_id: str, state: StateDep, principal: Reader) -> JobPublic:
    """Read a job: 404 for an id never seen, 410 for one whose data expired. A queued job shows
    `queue.position` (1 = next) and `queue.eta_s`."""
    job = await read(state, job_id, principal)
    return JobPublic.from_job(job, await state.backlog.place(job))


@router.get("/jobs", response_model=JobsPublic, responses=error_responses(422))
async def list_jobs(
    state: StateDep,
    principal: Reader,
    status: JobStatus | None = None,
    model: Annotated[str | None, Query(pattern=MODEL_NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(pattern=JOB_ID_PATTERN, description="a job id: `next_cursor`")] = None,
    reason: Annotated[
        str | None, Query(pattern=ERROR_CODE_PATTERN, description="an error code: `poison_job` lists the dead letters")
    ] = None,
) -> JobsPublic:
    """List jobs, newest first; pass `next_cursor` back as `cursor` for the next page."""
    owner = None if principal.can_see_all else principal.owner
    page = await state.store.list(status=status, model=model, limit=limit, cursor=cursor, owner=owner, reason=reason)
    return JobsPublic(jobs=[JobPublic.from_job(j) for j in page.jobs], next_cursor=page.next_cursor)


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic, responses=error_responses(404, 409, 410, 422))
async def cancel_job(job_id: str, state: StateDep, principal: Submitter) -> JobPublic:
    """Cancel a queued or running job (a batch stops its remaining chunks); a finished one answers 409."""
    return JobPublic.from_job(await cancel(state, job_id, principal))


@router.post(
    "/jobs/{job_id}/retry",
    status_code=202,
    response_model=JobPublic,
    responses=error_responses(404, 409, 410, 422),
)
async def retry_job(job_id: str, response: Response, state: StateDep, principal: Submitter) -> JobPublic:
    """Run a failed or aborted job again as a new job (`retry_of` links it); a batch reruns only
    the items that did not succeed."""
    options = Options(principal=principal)
    return respond(await retry(state, job_id, principal), response, options)


@router.get(
    "/jobs/{job_id}/results",
    responses={200: {"content": {"application/x-ndjson": {}}}, **error_responses(404, 409, 410, 422)},
)
async def read_results(
    job_id: str,
    request: Request,
    state: StateDep,
    principal: Reader,
    offset: Annotated[int, Query(ge=0, le=MAX_RESULTS_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:  # a StreamingResponse, or the page as JSON (typed Any so FastAPI infers no response model)
    """A batch's results in input order, paged; `Accept: application/x-ndjson` streams all of them."""
    job = await read(state, job_id, principal)
    if "application/x-ndjson" in request.headers.get("accept", ""):
        return StreamingResponse(results_stream(state, job), media_type="application/x-ndjson")
    return await results_page(state, job, offset, limit)


@router.get(
    "/jobs/{job_id}/events",
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(404, 410, 422)},
)
async def job_events(job_id: str, request: Request, state: StateDep, principal: Reader) -> StreamingResponse:
    """Server-Sent Events: the job now, then each status or progress change, until it finishes."""
    job = await read(state, job_id, principal)  # 404 / 410 before the stream starts
    return StreamingResponse(
        job_event_stream(state, job, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/jobs/{job_id}/webhook/redeliver", status_code=202, responses=error_responses(404, 409, 410, 422))
async def redeliver_webhook(job_id: str, state: StateDep, principal: Admin) -> dict[str, str]:
    """Admin: send the finished job's `job.completed` event again."""
    return {"webhook_id": await redeliver(state, job_id), "event": "job.completed"}
