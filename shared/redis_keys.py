"""Every Redis key mlqueue uses, built here and nowhere else (``tests/shared/test_redis_keys_registry.py``).

One line each: the key, its Redis type, its lifetime. Every key expires (``tests/api/test_redis_keys.py``);
the broker's own lists (``cpu``, ``gpu``, ``webhooks``) and kombu's bookkeeping are not ours.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

PREFIX = "mlqueue"

# Jobs (shared.store)
EVENTS_CHANNEL = f"{PREFIX}:events"  # pub/sub: {"id", "status"} on every transition
INDEX_ALL = f"{PREFIX}:jobs"  # sorted set of job ids, lexical = creation order; job TTL


def job_key(job_id: str) -> str:  # hash: the job record; job TTL
    return f"{PREFIX}:job:{job_id}"


def deliveries_key(job_id: str) -> str:  # list: webhook delivery attempts (JSON); job TTL
    return f"{PREFIX}:job:{job_id}:deliveries"


def tomb_key(job_id: str) -> str:  # string: JSON {"model", "owner"}; job TTL + tombstone TTL (410, not 404)
    return f"{PREFIX}:tomb:{job_id}"


def model_index(model: str) -> str:  # sorted set: INDEX_ALL for one model; job TTL
    return f"{PREFIX}:jobs:m:{model}"


def owner_index(owner: str) -> str:  # sorted set: INDEX_ALL for one API key; job TTL
    return f"{PREFIX}:jobs:o:{owner}"


def idem_key(key: str) -> str:  # string: "{job_id} {request_hash}"; idempotency TTL
    return f"{PREFIX}:idem:{key}"


def blob_key(job_id: str) -> str:  # string: an uploaded image's pixels; job TTL, deleted when the job finishes
    return f"{PREFIX}:blob:{job_id}"


# Batches (shared.batch_store)
def in_key(job_id: str, chunk: int) -> str:  # string: chunk's inputs (JSON list); deleted once it is done
    return f"{PREFIX}:batch:{job_id}:in:{chunk}"


def out_key(job_id: str, chunk: int) -> str:  # string: chunk's results (NDJSON); job TTL
    return f"{PREFIX}:batch:{job_id}:out:{chunk}"


def done_key(job_id: str) -> str:  # set: finished chunk indexes; job TTL
    return f"{PREFIX}:batch:{job_id}:done"


def image_key(job_id: str, index: int) -> str:  # string: image ``index``'s pixels; deleted with its chunk's inputs
    return f"{PREFIX}:batch:{job_id}:img:{index}"


# Scheduler (shared.scheduler): one line of waiting work per model queue, each key with the work's TTL
@dataclass(frozen=True)
class QueueKeys:
    ready: str  # sorted set member -> tag: waiting to be claimed
    waiting: str  # sorted set member -> when it was enqueued
    meta: str  # hash member -> JSON scheduling record, kept until the work is released
    claimed: str  # hash member -> "{runner}|{claimed at}"
    deliveries: str  # hash member -> times claimed
    keys: str  # hash fair-share key -> items waiting
    clock: str  # hash V -> virtual time; "F|{key}|{p}" -> that key's finish tag
    drained: str  # hash epoch second -> items claimed in it
    pending: str  # sorted set batch id -> created at: a batch whose chunks are being written


def queue_keys(queue: str) -> QueueKeys:
    return QueueKeys(*(f"{PREFIX}:q:{queue}:{f.name}" for f in fields(QueueKeys)))


# Workers (shared.presence, worker.sweeper)
WORKERS = f"{PREFIX}:workers"  # sorted set hostname -> last heartbeat; 10 presence TTLs
SWEEPER_LEASE = f"{PREFIX}:sweeper:lease"  # string: the sweeper holding the lease; PX lease


def worker_key(hostname: str) -> str:  # string: JSON presence (queues, models); TTL 3 heartbeats
    return f"{PREFIX}:worker:{hostname}"


# Result cache (shared.cache)
CACHE_STATS = f"{PREFIX}:cache:stats"  # hash "{model}:lookups|hits" -> count; 7 days from the last lookup


def cache_entry(model: str, version: int, digest: str) -> str:  # string: a cached output (JSON); cache TTL
    return f"{PREFIX}:cache:{model}:{version}:{digest}"


# Webhooks (worker.webhooks, worker.delayed, worker.chunks)
WEBHOOKS_DELAYED = f"{PREFIX}:webhooks:delayed"  # sorted set retry -> due time; TTL refreshed on write


def delivered_key(webhook_id: str) -> str:  # string: this event was delivered (2xx); job TTL
    return f"{PREFIX}:webhook:delivered:{webhook_id}"


def inflight_key(webhook_id: str) -> str:  # string: lock, one attempt at a time per event; webhook timeout + 30 s
    return f"{PREFIX}:webhook:inflight:{webhook_id}"


def stopped_key(job_id: str) -> str:  # string: the receiver answered 410, no more events; job TTL
    return f"{PREFIX}:webhook:stopped:{job_id}"


def progress_key(job_id: str) -> str:  # string: a job.progress event was sent; PX throttle interval
    return f"{PREFIX}:webhook:progress:{job_id}"


# Rate limits (api.ratelimit)
def rate_limit_key(kind: str, identity: str) -> str:  # string: GCRA theoretical arrival time; PX until it passes
    return f"{PREFIX}:rl:{kind}:{identity}"
