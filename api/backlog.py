"""What the API knows of each model queue's line: admission control, a job's place in it.

Admission (``MLQUEUE_MAX_BACKLOG`` items waiting, ``MLQUEUE_MAX_BACKLOG_AGE_S`` for the oldest):

- the oldest item has waited past the age bound: **503** ``queue_full`` (the queue is not keeping
  up, whoever sends);
- the queue holds ``max_backlog`` items: a key still within its fair share (``max_backlog`` x its
  weight / the weights of the keys with work waiting) is admitted, its share is kept for it; a key
  past its share gets **429** ``fair_share_exceeded`` when other keys are waiting too, **503**
  ``queue_full`` when it is the only one.

Every refusal has ``Retry-After`` from the measured drain rate. The queue's numbers are read at
most every ``REFRESH_S`` per API process (one round trip shared by every request meanwhile) and
what this process admits since is counted locally, so a burst cannot overshoot the bound by more
than what other API processes admit in that time.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

import redis.asyncio as aredis

from shared.errors import ErrorCode, TooManyRequests, Unavailable
from shared.jobs import Job, JobKind, JobStatus, QueueInfo
from shared.scheduler import QueueState, chunk_member, items_ahead, queue_state
from shared.settings import Settings

REFRESH_S = 0.25
RETRY_MIN_S, RETRY_MAX_S, RETRY_STALLED_S = 1, 600, 30


@dataclass
class _Cached:
    state: QueueState
    read_at: float
    admitted: dict[str, int] = field(default_factory=dict)  # by fair-share key, since the read


class Backlog:
    def __init__(self, client: aredis.Redis, settings: Settings, weights: dict[str, float]) -> None:
        """``weights``: fair-share key (``key:{name}``) -> weight; any other key weighs 1."""
        self.r = client
        self.settings = settings
        self.weights = weights
        self._cached: dict[str, _Cached] = {}
        self._reading: dict[str, asyncio.Future[_Cached]] = {}

    async def state(self, queue: str) -> QueueState:
        return (await self._current(queue)).state

    async def _current(self, queue: str) -> _Cached:
        cached = self._cached.get(queue)
        if cached is not None and time.monotonic() - cached.read_at < REFRESH_S:
            return cached
        if queue in self._reading:  # one read in flight serves everyone who asks meanwhile
            return await asyncio.shield(self._reading[queue])
        reading: asyncio.Future[_Cached] = asyncio.get_running_loop().create_future()
        self._reading[queue] = reading
        try:
            fresh = _Cached(await queue_state(self.r, queue), time.monotonic())
            self._cached[queue] = fresh
            reading.set_result(fresh)
            return fresh
        except BaseException as exc:
            reading.set_exception(exc)
            reading.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._reading[queue]

    async def admit(self, queue: str, share_key: str, weight: float, items: int) -> None:
        """Raise 429 or 503 (with Retry-After) if ``items`` more of this key's work may not wait
        in ``queue`` now; otherwise count them as admitted."""
        s = self.settings
        if not s.max_backlog and not s.max_backlog_age_s:
            return
        cached = await self._current(queue)
        q = cached.state
        if s.max_backlog_age_s and q.oldest_age_s > s.max_backlog_age_s:
            retry = q.oldest_age_s - s.max_backlog_age_s if q.drain_rate > 0 else RETRY_STALLED_S
            raise Unavailable(
                f"queue {queue} is full: its oldest job has waited {q.oldest_age_s:.0f}s "
                f"(the bound is {s.max_backlog_age_s:g}s)",
                code=ErrorCode.QUEUE_FULL,
                headers={"Retry-After": _seconds(retry)},
            )
        per_key = {k: n + cached.admitted.get(k, 0) for k, n in q.per_key.items()}
        for k, n in cached.admitted.items():
            per_key.setdefault(k, n)
        backlog = q.backlog + sum(cached.admitted.values())
        if s.max_backlog and backlog + items > s.max_backlog:
            mine = per_key.get(share_key, 0)
            active = {k for k, n in per_key.items() if n > 0} | {share_key}
            share = s.max_backlog * weight / sum(self._weight(k, share_key, weight) for k in active)
            if mine + items > share:
                excess = (mine + items - share) if len(active) > 1 else (backlog + items - s.max_backlog)
                retry = excess / q.drain_rate if q.drain_rate > 0 else RETRY_STALLED_S
                headers = {"Retry-After": _seconds(retry)}
                if len(active) > 1:
                    raise TooManyRequests(
                        f"queue {queue} is full and this key holds more than its fair share of it "
                        f"({mine} of {backlog} items waiting)",
                        code=ErrorCode.FAIR_SHARE_EXCEEDED,
                        headers=headers,
                    )
                raise Unavailable(
                    f"queue {queue} is full ({backlog} items waiting, the bound is {s.max_backlog})",
                    code=ErrorCode.QUEUE_FULL,
                    headers=headers,
                )
        cached.admitted[share_key] = cached.admitted.get(share_key, 0) + items

    def _weight(self, key: str, own_key: str, own_weight: float) -> float:
        return own_weight if key == own_key else self.weights.get(key, 1.0)

    async def place(self, job: Job) -> QueueInfo | None:
        """Where a queued job stands now (a batch: its first chunk); None once it is claimed."""
        if job.status is not JobStatus.QUEUED:
            return None
        member = chunk_member(job.id, 0) if job.kind is JobKind.BATCH else job.id
        ahead = await items_ahead(self.r, job.queue, member)
        if ahead is None:
            return None
        return info(ahead, (await self.state(job.queue)).drain_rate)


def info(ahead: int, drain_rate: float) -> QueueInfo:
    eta = 0.0 if ahead <= 0 else (round(ahead / drain_rate, 3) if drain_rate > 0 else None)
    return QueueInfo(position=ahead + 1, eta_s=eta)


def _seconds(value: float) -> str:
    return str(min(RETRY_MAX_S, max(RETRY_MIN_S, math.ceil(value))))
