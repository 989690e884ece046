"""The job store in Redis: one hash per job, time-ordered indexes, a tombstone, an events channel.

Layout (every key has a TTL; the keys are built in ``shared.redis_keys``):
    mlqueue:job:{id}        hash; ``status`` raw, every other field JSON; TTL = job TTL
    mlqueue:job:{id}:deliveries  list of webhook delivery attempts (JSON)
    mlqueue:tomb:{id}       JSON {"model", "owner"}; outlives the job so an old id answers 410, not 404
                            (to its owner: to another key it stays a 404, as the live job was)
    mlqueue:jobs            sorted set of ids, all score 0, so lexical order = creation order
    mlqueue:jobs:m:{model}  the same, per model
    mlqueue:jobs:o:{owner}  the same, per API key
    mlqueue:idem:{key}      "{job_id} {request_hash}" for Idempotency-Key
    mlqueue:blob:{id}       an uploaded image, already decoded and resized (the claim check); deleted
                            when the job finishes
    mlqueue:events          pub/sub channel: {"id", "status"} on every transition

Waiting work is queued by ``shared.scheduler`` (its own keys), in the transaction that writes the
records; a batch written before its chunks' inputs is marked pending there until they are.

Status changes go through one Lua script that compares and sets atomically, so a cancel and a
worker's finish can never both win. The API uses ``AsyncJobStore``; the worker ``JobStore``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aredis
import redis.asyncio.retry
import redis.backoff
import redis.retry
from redis.commands.core import AsyncScript
from redis.typing import EncodableT, FieldT

from shared.errors import Conflict, ErrorCode, Gone, NotFound
from shared.fastjson import JsonValue
from shared.jobs import Job, JobStatus, WebhookDelivery, min_job_id_at
from shared.redis_keys import (
    EVENTS_CHANNEL,
    INDEX_ALL,
    blob_key,
    deliveries_key,
    idem_key,
    job_key,
    model_index,
    owner_index,
    queue_keys,
    tomb_key,
)
from shared.scheduler import Ranked, Work, enqueue, register_enqueue
from shared.settings import Settings

LIST_SCAN_CAP = 2000  # most index entries one list call examines before returning a cursor


@dataclass(frozen=True)
class Enqueue:
    """Work to put in a model queue's line, and the Celery tickets that wake its workers."""

    queue: str
    items: Sequence[Work]
    tickets: Sequence[str]  # message bodies (``shared.celery_messages.ticket_message``)


async def push_work(
    pipe: aredis.client.Pipeline, script: AsyncScript, work: Enqueue, now: float, step: float, ttl_s: int
) -> int:
    """Queue ``work`` in the caller's pipeline; returns the index of the reply that ranks it."""
    at = len(pipe.command_stack)
    await enqueue(pipe, script, work.queue, work.items, now, step, ttl_s)
    for body in work.tickets:
        pipe.lpush(work.queue, body)
    return at


BLOB_REF = "$blob"  # an input of {"$blob": key} means "the bytes at this key"


def has_blob(value: JsonValue) -> bool:
    """Whether a stored input is a claim check (its bytes live under their own key)."""
    return isinstance(value, dict) and BLOB_REF in value


def tombstone(job: Job) -> str:
    return json.dumps({"model": job.model, "owner": job.owner})


def tombstone_owner(value: str) -> str | None:
    """The owner a tombstone names; None for one written before tombstones named it (the model name
    alone), which then answers 410 only to keys that see every job."""
    with contextlib.suppress(ValueError):
        data = json.loads(value)
        owner = data.get("owner") if isinstance(data, dict) else None
        if isinstance(owner, str):
            return owner
    return None


# KEYS[1] job; ARGV[1] "|allowed|from|", ARGV[2] channel, ARGV[3] event, ARGV[4..] field, value...
# Returns nil when the job does not exist, else {applied (0|1), status before}.
TRANSITION_LUA = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return nil end
if not string.find(ARGV[1], '|' .. cur .. '|', 1, true) then return {0, cur} end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PUBLISH', ARGV[2], ARGV[3])
return {1, cur}
"""

# Columns that are not part of the public record. ``runner`` is "{hostname}#{incarnation}" of the
# worker process running the job: the sweeper compares it with that worker's presence.
_PRIVATE_FIELDS = ("input", "runner")


def encode_fields(fields: dict[str, Any]) -> dict[FieldT, EncodableT]:
    return {k: (v.value if k == "status" else json.dumps(v, allow_nan=False)) for k, v in fields.items()}


_PROGRESS_FIELDS = ("progress_total", "progress_done", "progress_failed")


def decode_job(raw: dict[str, str], deliveries: list[str] | None = None) -> Job:
    data: dict[str, Any] = {
        k: (v if k == "status" else json.loads(v)) for k, v in raw.items() if k not in _PRIVATE_FIELDS
    }
    if "progress_total" in data:  # counters kept flat so chunks can HINCRBY them
        total, done, failed = (data.pop(f) for f in _PROGRESS_FIELDS)
        data["progress"] = {"total": total, "done": done, "failed": failed}
    if deliveries:
        data["deliveries"] = [json.loads(d) for d in deliveries]
    return Job.model_validate(data)


def decode_input(value: str | None) -> JsonValue:
    """A job's stored input (the ``input`` field, JSON); None for a record without one."""
    return json.loads(value) if value else None


# Reading jobs: both stores queue the same commands on a pipeline (redis-py queues a command
# synchronously on its sync and its async pipeline alike) and decode the replies the same way.
AnyPipeline = redis.client.Pipeline | aredis.client.Pipeline


def queue_reads(pipe: AnyPipeline, job_ids: Sequence[str], *, deliveries: bool = True) -> None:
    """Queue the reads of jobs' records (and their webhook delivery logs) for ``decode_reads``."""
    for job_id in job_ids:
        pipe.hgetall(job_key(job_id))
        if deliveries:
            pipe.lrange(deliveries_key(job_id), 0, -1)


def decode_reads(
    replies: Sequence[Any],  # a pipeline's replies (redis-py types them list[Any])
    *,
    deliveries: bool = True,
    with_input: bool = False,
) -> list[StoredJob]:
    """The replies of ``queue_reads`` (with the same ``deliveries``), one record per job id; the
    stored input is decoded only ``with_input`` (listing many jobs does not pay for their inputs)."""
    step = 2 if deliveries else 1
    out: list[StoredJob] = []
    for k in range(0, len(replies), step):
        raw = replies[k]
        if not raw:
            out.append(StoredJob(None, None))
            continue
        job = decode_job(raw, replies[k + 1] if deliveries else None)
        out.append(StoredJob(job, decode_input(raw.get("input")) if with_input else None))
    return out


def job_fields(job: Job) -> dict[str, Any]:
    fields = job.model_dump(mode="json", exclude_none=True, exclude={"progress", "deliveries"})
    fields["status"] = job.status
    if job.progress is not None:
        fields.update(zip(_PROGRESS_FIELDS, (job.progress.total, job.progress.done, job.progress.failed), strict=True))
    return fields


def transition_args(
    allowed: tuple[JobStatus, ...], fields: dict[str, Any], job_id: str, snapshot: Job | None = None
) -> list[EncodableT]:
    """Script arguments; ``snapshot`` (the record as it will be) rides in the event, so a waiting
    request can answer without reading the job back."""
    allowed_s = "|" + "|".join(s.value for s in allowed) + "|"
    event: dict[str, Any] = {"id": job_id, "status": fields["status"].value if "status" in fields else None}
    if snapshot is not None:
        event["job"] = snapshot.model_dump(mode="json", exclude={"deliveries"})
    event_json = json.dumps(event)
    flat: list[EncodableT] = []
    for k, v in encode_fields(fields).items():
        flat += [k, v]
    return [allowed_s, EVENTS_CHANNEL, event_json, *flat]


# The clients are built in ``shared.redis_connection`` (a plain Redis or a Sentinel group); these
# names stay importable from here.
from shared.redis_connection import async_redis_client as async_redis_client  # noqa: E402
from shared.redis_connection import binary_or_none, text, text_or_none, texts  # noqa: E402
from shared.redis_connection import redis_client as redis_client  # noqa: E402


@dataclass(frozen=True)
class StoredJob:
    """A job's record and its input, read together; ``job`` is None when there is no record."""

    job: Job | None
    stored_input: JsonValue  # as submitted; a claim check is ``{"$blob": key}`` (``resolve_inputs``)


@dataclass(frozen=True)
class SubmittedInput:
    """A job's input as submitted, and its image's pixels if it had one (None once dropped)."""

    value: JsonValue
    pixels: bytes | None


@dataclass(frozen=True)
class Transition:
    """One compare-and-set of ``JobStore.transition_many``: ``fields`` applied if the job's status
    is in ``allowed``; ``snapshot`` (the record as it will be) rides in the event."""

    job_id: str
    allowed: tuple[JobStatus, ...]
    fields: dict[str, Any]
    snapshot: Job | None = None


@dataclass(frozen=True)
class Recorded:
    """A job as ``AsyncJobStore.create`` left it, and whether this call wrote it (an
    Idempotency-Key replay returns the job the key already holds)."""

    job: Job
    created: bool


@dataclass(frozen=True)
class JobPage:
    """A page of ``AsyncJobStore.list``: the jobs, newest first, and the cursor of the next page
    (None on the last)."""

    jobs: list[Job]
    next_cursor: str | None


@dataclass(frozen=True)
class NewJob:
    """A job to write: its record, its input, and an image's pixels (stored as a claim check)."""

    job: Job
    job_input: JsonValue
    blob: bytes | None = None


class AsyncJobStore:
    """The API's view: create, read, list and cancel jobs."""

    def __init__(self, client: aredis.Redis, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        self._transition = client.register_script(TRANSITION_LUA)
        self._enqueue = register_enqueue(client)

    async def create(
        self, job: Job, job_input: JsonValue, idempotency_key: str | None = None, blob: bytes | None = None
    ) -> Recorded:
        """Write the record of a job that is queued elsewhere (a batch, whose chunks follow) or
        finished already (a cache hit). A queued one is marked pending, so
        a sweeper fails it if the API dies before its chunks are queued.

        ``blob`` (an image) is stored under its own key and the input refers to it."""
        if idempotency_key is not None:
            existing = await self.claim_idempotency(job, idempotency_key)
            if existing is not None:
                return Recorded(existing, created=False)
        await self.create_many([NewJob(job, job_input, blob)])
        return Recorded(job, created=True)

    async def claim_idempotency(self, job: Job, idempotency_key: str) -> Job | None:
        """Reserve ``idempotency_key`` for ``job``; the job that holds it already, if one does
        (409 when that one was made from a different request)."""
        marker = f"{job.id} {job.request_hash}"
        if await self.r.set(idem_key(idempotency_key), marker, nx=True, ex=self.settings.idempotency_ttl_s):
            return None
        return await self._existing_for_key(idempotency_key, job.request_hash)

    async def create_many(self, jobs: Sequence[NewJob], work: Enqueue | None = None) -> Ranked | None:
        """Write many new jobs and queue their work in one transaction (a group commit): both
        exist or neither. Returns where the work stands in line."""
        s = self.settings
        now = time.time()
        async with self.r.pipeline(transaction=True) as pipe:
            indexes: set[str] = set()
            for new in jobs:
                job, job_input = new.job, new.job_input
                fields = encode_fields(job_fields(job))
                if new.blob is not None:
                    pipe.set(blob_key(job.id), new.blob, ex=s.job_ttl_s)
                    job_input = {BLOB_REF: blob_key(job.id), **(job_input or {})}
                fields["input"] = json.dumps(job_input, allow_nan=False)
                pipe.hset(job_key(job.id), mapping=fields)
                pipe.expire(job_key(job.id), s.job_ttl_s)
                pipe.set(tomb_key(job.id), tombstone(job), ex=s.job_ttl_s + s.tombstone_ttl_s)
                for index in (INDEX_ALL, model_index(job.model), *([owner_index(job.owner)] if job.owner else [])):
                    pipe.zadd(index, {job.id: 0})
                    indexes.add(index)
                if work is None and not job.status.is_terminal():
                    pipe.zadd(queue_keys(job.queue).pending, {job.id: job.created_at})
                    pipe.expire(queue_keys(job.queue).pending, s.job_ttl_s)
            trim_below = "(" + min_job_id_at(min(new.job.created_at for new in jobs) - s.job_ttl_s)
            for index in sorted(indexes):
                pipe.expire(index, s.job_ttl_s)
                pipe.zremrangebylex(index, "-", trim_below)
            at = None
            if work is not None:
                at = await push_work(pipe, self._enqueue, work, now, s.priority_step, s.job_ttl_s)
            replies = await pipe.execute()
        return Ranked.from_reply(replies[at]) if at is not None else None

    async def _existing_for_key(self, key: str, request_hash: str | None) -> Job:
        marker = text_or_none(await self.r.get(idem_key(key))) or " "
        job_id, _, stored_hash = marker.partition(" ")
        if stored_hash != request_hash:
            raise Conflict(
                "Idempotency-Key was already used with a different request", code=ErrorCode.IDEMPOTENCY_CONFLICT
            )
        # The first request may still be writing its record: give it a moment.
        for _ in range(20):
            [stored] = decode_reads([await self.r.hgetall(job_key(job_id))], deliveries=False)
            if stored.job is not None:
                return stored.job
            await asyncio.sleep(0.05)
        raise Conflict(
            "the request with this Idempotency-Key is still being created", code=ErrorCode.IDEMPOTENCY_IN_FLIGHT
        )

    async def get(self, job_id: str) -> Job:
        async with self.r.pipeline(transaction=False) as pipe:
            queue_reads(pipe, [job_id])
            [stored] = decode_reads(await pipe.execute())
        if stored.job is not None:
            return stored.job
        tomb = await self.r.get(tomb_key(job_id))
        if tomb is not None:
            raise Gone(f"job {job_id} has expired", owner=tombstone_owner(text(tomb)))
        raise NotFound(f"no job with id {job_id}", code=ErrorCode.JOB_NOT_FOUND)

    async def stored_input(self, job_id: str, binary: aredis.Redis) -> SubmittedInput:
        """A job's input as submitted, and its image's pixels if it had one (None once dropped)."""
        value = decode_input(text_or_none(await self.r.hget(job_key(job_id), "input")))
        if not has_blob(value):
            return SubmittedInput(value, None)
        pixels = binary_or_none(await binary.get(value.pop(BLOB_REF)))
        return SubmittedInput(value, pixels)

    async def transition(self, job_id: str, allowed: tuple[JobStatus, ...], fields: dict[str, Any]) -> JobStatus | None:
        """Apply ``fields`` if the job's status is in ``allowed``; returns the status before, or
        None when the job is gone. Raises Conflict when the status did not allow it."""
        res = await self._transition(keys=[job_key(job_id)], args=transition_args(allowed, fields, job_id))
        if res is None:
            return None
        applied, before = res
        if not applied:
            raise Conflict(
                f"job {job_id} is {before}", code=ErrorCode.JOB_NOT_CANCELABLE if before else ErrorCode.CONFLICT
            )
        return JobStatus(before)

    async def cancel(self, job_id: str) -> Job:
        await self.get(job_id)  # 404 / 410 first
        now = time.time()
        fields = {"status": JobStatus.CANCELED, "completed_at": now}
        before = await self.transition(job_id, (JobStatus.QUEUED, JobStatus.RUNNING), fields)
        if before is None:
            await self.get(job_id)  # raises
        await self.r.delete(blob_key(job_id))
        return await self.get(job_id)

    async def fail_unsent(self, job_id: str, message: str) -> None:
        """The task could not be sent: the job must not sit queued forever."""
        fields = {
            "status": JobStatus.FAILED,
            "completed_at": time.time(),
            "error": {"code": ErrorCode.ENQUEUE_FAILED, "message": message},
        }
        with contextlib.suppress(Conflict):  # canceled meanwhile: nothing to fix
            await self.transition(job_id, (JobStatus.QUEUED,), fields)

    async def list(
        self,
        *,
        status: JobStatus | None,
        model: str | None,
        limit: int,
        cursor: str | None,
        owner: str | None = None,
        reason: str | None = None,
    ) -> JobPage:
        """Jobs newest first (only ``owner``'s when given; only those whose error has the code
        ``reason``, e.g. ``poison_job``, the dead letters); the cursor is the last id of the previous page."""
        index = owner_index(owner) if owner else model_index(model) if model else INDEX_ALL
        upper = f"({cursor}" if cursor else "+"
        found: list[Job] = []
        scanned = 0
        while scanned < LIST_SCAN_CAP:
            ids = texts(await self.r.zrevrangebylex(index, upper, "-", start=0, num=max(limit, 50)))
            if not ids:
                return JobPage(found, None)
            async with self.r.pipeline(transaction=False) as pipe:
                queue_reads(pipe, ids, deliveries=False)
                records = decode_reads(await pipe.execute(), deliveries=False)
            for job_id, stored in zip(ids, records, strict=True):
                scanned += 1
                job = stored.job
                if job is None:
                    await self.r.zrem(index, job_id)  # aged out
                    continue
                if (
                    (status is None or job.status == status)
                    and (model is None or job.model == model)
                    and (reason is None or (job.error is not None and job.error.code == reason))
                ):
                    found.append(job)
                if len(found) == limit:
                    return JobPage(found, job.id)
            upper = f"({ids[-1]}"
        return JobPage(found, upper[1:])


class JobStore:
    """The worker's view: read a job and its input, move it through its states."""

    def __init__(self, client: redis.Redis, binary: redis.Redis | None = None) -> None:
        self.r = client
        self.binary = binary or client  # for claim-check bytes: a client without decode_responses
        self._transition = client.register_script(TRANSITION_LUA)

    def get(self, job_id: str) -> Job | None:
        return self.get_with_input(job_id).job

    def get_with_input(self, job_id: str) -> StoredJob:
        """The job and its input in one round trip (the input is a field of the same hash); a
        claim check comes back as ``{"$blob": key}``, for ``resolve_inputs``."""
        return self.get_many_with_input([job_id])[0]

    def get_many_with_input(self, job_ids: Sequence[str]) -> list[StoredJob]:
        """``get_with_input`` for many jobs, in one round trip."""
        with self.r.pipeline(transaction=False) as pipe:
            queue_reads(pipe, job_ids)
            return decode_reads(pipe.execute(), with_input=True)

    def resolve_inputs(self, values: Sequence[JsonValue]) -> list[JsonValue | bytes | None]:
        """Claim checks replaced by their bytes (None where they expired), in one round trip; any
        other input as it is."""
        keys = [value[BLOB_REF] for value in values if has_blob(value)]
        blobs = iter(self.binary.mget(keys) if keys else [])
        return [next(blobs) if has_blob(value) else value for value in values]

    def record_delivery(self, job_id: str, delivery: WebhookDelivery) -> None:
        """Append one webhook attempt to the job's delivery log (kept as long as the job)."""
        key = deliveries_key(job_id)
        ttl = self.r.ttl(job_key(job_id))
        with self.r.pipeline(transaction=True) as pipe:
            pipe.rpush(key, delivery.model_dump_json())
            pipe.expire(key, ttl if ttl and ttl > 0 else 3600)
            pipe.execute()

    def drop_blob(self, job_id: str) -> None:
        self.r.delete(blob_key(job_id))

    def transition(
        self, job_id: str, allowed: tuple[JobStatus, ...], fields: dict[str, Any], snapshot: Job | None = None
    ) -> bool:
        res = self._transition(keys=[job_key(job_id)], args=transition_args(allowed, fields, job_id, snapshot))
        return bool(res and res[0])

    def transition_many(
        self,
        moves: Sequence[Transition],
        *,
        drop_blobs: Sequence[str] = (),
        before: Callable[[redis.client.Pipeline], None] | None = None,
    ) -> list[bool]:
        """Many ``transition`` calls in one round trip; whether
        each applied. ``before`` adds commands ahead of them (a cache write), ``drop_blobs`` deletes
        claim checks after them."""
        if not moves and not drop_blobs:
            return []
        with self.r.pipeline(transaction=False) as pipe:
            if before is not None:
                before(pipe)
            first = len(pipe.command_stack)
            for move in moves:
                args = transition_args(move.allowed, move.fields, move.job_id, move.snapshot)
                self._transition(keys=[job_key(move.job_id)], args=args, client=pipe)
            for job_id in drop_blobs:
                pipe.delete(blob_key(job_id))
            replies = pipe.execute()
        return [bool(res and res[0]) for res in replies[first : first + len(moves)]]
