"""Batch routes: many inputs in one job, chunked across the workers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from api.deps import StateDep
from api.openapi import error_responses
from api.routes.jobs import (
    SUBMIT_ERRORS,
    CancelAfterHeader,
    IdempotencyHeader,
    PreferHeader,
    options_from,
    respond,
    upload_body,
)
from api.security import Principal, Scope, authorize
from api.submission import create_batch as submit
from api.submission import read_submission
from shared.jobs import BatchCreate, JobPublic

router = APIRouter(prefix="/v1", tags=["batches"])


@router.post(
    "/models/{model}/batches",
    status_code=202,
    response_model=JobPublic,
    openapi_extra=upload_body("files", BatchCreate, many=True),
    responses={
        200: {"model": JobPublic, "description": "finished within `Prefer: wait`"},
        **error_responses(*SUBMIT_ERRORS),
    },
)
async def create_batch(
    model: str,
    request: Request,
    response: Response,
    state: StateDep,
    principal: Annotated[Principal, Depends(authorize(Scope.SUBMIT, batch=True))],
    prefer: PreferHeader = None,
    idempotency_key: IdempotencyHeader = None,
    cancel_after: CancelAfterHeader = None,
) -> JobPublic:
    """Submit many inputs as one job (`kind: batch`); `progress` counts items, results are paged."""
    options = options_from(state, principal, prefer, idempotency_key, cancel_after)
    submission = await read_submission(request, state, batch=True)
    return respond(await submit(state, model, submission, options), response, options)
