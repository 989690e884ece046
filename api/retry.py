"""``POST /v1/jobs/{id}/retry``: run a failed or aborted job again, as a new job linked to it.

The new job has ``retry_of`` set to the old one's id, the same model version, webhook and
priority, and belongs to the same API key. A single job reruns its input (an image's pixels are
kept while its job has failed, until it expires). A batch reruns only the items that did not
succeed (failed, or never ran): item ``i`` of the new batch is the ``i``-th such item of the old
one, in index order. The old job is left as it was.
"""

from __future__ import annotations

from api.deps import ApiState
from api.lifecycle import read_job
from api.security import Principal
from api.submission import Created, Options, Submission, create_batch, create_job
from shared.errors import Conflict, ErrorCode
from shared.jobs import Job, JobKind, JobStatus

RETRYABLE = (JobStatus.FAILED, JobStatus.ABORTED)


async def retry_job(state: ApiState, job_id: str, principal: Principal) -> Created:
    old = await read_job(state, job_id, principal)
    batch_with_failures = old.kind is JobKind.BATCH and old.status.is_terminal() and _unfinished(old)
    if old.status not in RETRYABLE and not batch_with_failures:
        raise Conflict(
            f"job {old.id} is {old.status.value}: only a failed or aborted job, or a finished batch with "
            "failed items, can be retried",
            code=ErrorCode.JOB_NOT_RETRYABLE,
        )
    options = Options(owner=old.owner, principal=principal)
    sub = Submission(
        version=old.version,
        webhook=old.webhook.url if old.webhook else None,
        webhook_events=list(old.webhook.events) if old.webhook else None,
        priority=old.priority,
    )
    if old.kind is JobKind.BATCH:
        items = await state.batches.unfinished_items(old.id, old.chunks or 0, old.chunk_size or 1)
        if items is None:
            raise Conflict(f"job {old.id}'s inputs are no longer stored", code=ErrorCode.INPUT_UNAVAILABLE)
        return await create_batch(state, old.model, sub, options, prepared=items, retry_of=old.id)
    stored = await state.store.stored_input(old.id, state.batches.binary)
    if stored.pixels is None and isinstance(stored.value, dict) and "filename" in stored.value:
        raise Conflict(f"job {old.id}'s image is no longer stored", code=ErrorCode.INPUT_UNAVAILABLE)
    sub.input = stored.value
    prepared = stored if stored.pixels is not None else None
    return await create_job(state, old.model, sub, options, prepared=prepared, retry_of=old.id)


def _unfinished(job: Job) -> bool:
    progress = job.progress
    return progress is not None and (progress.failed > 0 or progress.done < progress.total)
