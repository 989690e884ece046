"""Reading and changing jobs after creation: deadlines enforced on read, cancel, webhook events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import anyio

from api.deps import ApiState
from api.events import EventQueue
from api.security import Principal
from shared.errors import Conflict, ErrorCode, Gone, NotFound
from shared.jobs import Job, WebhookEvent, deadline_transition, is_job_id
from shared.webhook_events import send_event, wants_event

log = logging.getLogger(__name__)


async def notify(state: ApiState, job: Job, event: WebhookEvent) -> str | None:
    """Queue a webhook event for ``job`` (if it has a webhook that wants it); returns its webhook id."""
    if not wants_event(job, event):
        return None
    try:
        return await anyio.to_thread.run_sync(send_event, state.publisher, job, event)
    except Exception:  # the state change already happened; a lost event is logged, never a 500
        log.exception("webhook.enqueue_failed event=%s", event.value)
        return None


async def read_job(state: ApiState, job_id: str, principal: Principal | None = None) -> Job:
    """The job, with its Cancel-After deadline applied if it has passed (no worker may be around to
    do it: a job nobody started must still read ``aborted``). Another key's job is a 404, expired
    or not: its tombstone names its owner. Every route with a job id comes through here, so an id
    that is not one (``X:deliveries``, ``../``) is a 404 before it reaches a Redis key."""
    if not is_job_id(job_id):
        raise NotFound(f"no job with id {job_id[:40]!r}", code=ErrorCode.JOB_NOT_FOUND)
    try:
        job = await state.store.get(job_id)
    except Gone as exc:
        if principal is not None and not principal.can_see_owner(exc.owner):
            raise NotFound(f"no job with id {job_id}", code=ErrorCode.JOB_NOT_FOUND) from None
        raise
    if principal is not None and not principal.can_see(job):
        raise NotFound(f"no job with id {job_id}", code=ErrorCode.JOB_NOT_FOUND)
    change = deadline_transition(job, time.time())
    if change is not None:
        with contextlib.suppress(Conflict):  # a worker moved it meanwhile: its state stands
            await state.store.transition(job_id, change.allowed, change.fields)
            job = await state.store.get(job_id)
            await notify(state, job, WebhookEvent.COMPLETED)
        job = await state.store.get(job_id)
    return job


async def cancel_job(state: ApiState, job_id: str, principal: Principal) -> Job:
    await read_job(state, job_id, principal)
    job = await state.store.cancel(job_id)
    await notify(state, job, WebhookEvent.COMPLETED)
    return job


async def redeliver(state: ApiState, job_id: str) -> str:
    """Send the final event again (a new webhook id: it is a new delivery the receiver asked for)."""
    job = await read_job(state, job_id)
    if job.webhook is None:
        raise Conflict(f"job {job_id} has no webhook", code=ErrorCode.NO_WEBHOOK)
    if not job.status.is_terminal():
        raise Conflict(
            f"job {job_id} is {job.status.value}; only a finished job's event can be replayed",
            code=ErrorCode.JOB_NOT_FINISHED,
        )
    webhook_id = await notify(state, job, WebhookEvent.COMPLETED)
    if webhook_id is None:
        raise Conflict("the event could not be queued", code=ErrorCode.REDELIVER_FAILED)
    return webhook_id


async def wait_for_terminal(state: ApiState, job: Job, timeout_s: float) -> Job:
    """Hold until the job is terminal or the timeout passes, woken by events (no polling)."""
    if timeout_s <= 0 or job.status.is_terminal():
        return job
    with state.events.subscribe(job.id) as events:
        job = await read_job(state, job.id)  # it may have finished before we subscribed
        return await await_terminal(state, job, events, timeout_s)


async def await_terminal(state: ApiState, job: Job, events: EventQueue, timeout_s: float) -> Job:
    """Wait on an existing subscription. A terminal event carries the finished record, so the answer
    needs no read, except for a job with a webhook, whose delivery log the event does not carry."""
    loop = asyncio.get_running_loop()
    until = loop.time() + timeout_s
    if job.deadline_at is not None:  # wake at the Cancel-After deadline too, to report it
        until = min(until, loop.time() + max(0.0, job.deadline_at - time.time()) + 0.01)
    while not job.status.is_terminal():
        remaining = until - loop.time()
        if remaining <= 0:
            break
        try:
            event = await asyncio.wait_for(events.get(), remaining)
        except TimeoutError:
            return await read_job(state, job.id)
        if "job" in event and job.webhook is None:
            job = Job.model_validate(event["job"])
        elif event.get("resync") or event.get("status") != "running":
            job = await read_job(state, job.id)
    return job
