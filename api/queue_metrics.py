"""The queue gauges, read from Redis at scrape time: per queue its depth, the age of its oldest
waiting work, its drain rate, live consumers, and work waiting with no live consumer: the signals to
autoscale workers on (KEDA, HPA external metrics)."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING

from api.metrics import (
    LIVE_WORKERS,
    QUEUE_CONSUMERS,
    QUEUE_DEPTH,
    QUEUE_DRAIN_RATE,
    QUEUE_OLDEST_AGE,
    QUEUE_SCRAPE_OK,
    QUEUE_WAITING_WITHOUT_CONSUMER,
)
from shared.jobs import job_id_created_at
from shared.queues import MODEL_QUEUES, Queue
from shared.scheduler import queue_state

if TYPE_CHECKING:
    from api.deps import ApiState

log = logging.getLogger(__name__)

OLDEST_SCAN = 10  # messages looked at from the queue's tail to find one with a ULID id


def message_created_s(raw: str | bytes) -> float | None:
    """When the job behind a queued kombu message was created: ``headers.id`` is the job id (single
    jobs) or ``{job_id}.{chunk}`` (batch chunks), a ULID whose first characters are its creation time."""
    try:
        envelope = json.loads(raw)
        task_id = envelope["headers"]["id"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(task_id, str):
        return None
    return job_id_created_at(task_id.split(".", 1)[0])


class QueueSampler:
    """Reads the queue gauges from Redis. Model queues: the scheduler's line. The webhooks queue is a
    plain Celery queue: kombu's Redis transport keeps it as a LIST pushed with LPUSH and popped with
    BRPOP, so the oldest message is at index -1; a message whose id is no ULID (a delivery's task id
    is a UUID) is dated from the first scrape that saw it at the tail: a lower bound of its age."""

    def __init__(self) -> None:
        self._first_seen: dict[str, tuple[str, float]] = {}  # queue -> (raw message, first seen at)

    async def sample(self, state: ApiState) -> None:
        try:
            await self._sample(state)
        except Exception as exc:  # noqa: BLE001 - the HTTP metrics still answer when Redis is down
            log.warning("metrics.queue_sample_failed error=%s", exc)
            QUEUE_SCRAPE_OK.set(0)
            gauges = (QUEUE_DEPTH, QUEUE_OLDEST_AGE, QUEUE_DRAIN_RATE, QUEUE_CONSUMERS, QUEUE_WAITING_WITHOUT_CONSUMER)
            for gauge in gauges:
                gauge.clear()  # no stale numbers: an absent series is "unknown", not "empty"
            return
        QUEUE_SCRAPE_OK.set(1)

    async def _sample(self, state: ApiState) -> None:
        """Model queues from the scheduler's line (``shared.scheduler``); the webhooks queue, a
        plain Celery queue, from its list."""
        now = time.time()
        depths: dict[str, tuple[int, float]] = {}
        for queue in MODEL_QUEUES:
            line = await queue_state(state.redis, queue.value, now)
            depths[queue.value] = line.backlog, line.oldest_age_s
            QUEUE_DRAIN_RATE.labels(queue=queue.value).set(line.drain_rate)
        async with state.redis.pipeline(transaction=False) as pipe:
            pipe.llen(Queue.WEBHOOKS.value)
            pipe.lrange(Queue.WEBHOOKS.value, -OLDEST_SCAN, -1)
            depth, tail = await pipe.execute()
        depths[Queue.WEBHOOKS.value] = int(depth), self._oldest_age(Queue.WEBHOOKS.value, tail, now) if depth else 0
        workers = await state.fleet.workers(fresh=True)
        consumers = await state.fleet.consumers()
        LIVE_WORKERS.set(len(workers))
        for name, (depth, oldest) in depths.items():
            live = len(consumers.get(name, []))
            QUEUE_DEPTH.labels(queue=name).set(depth)
            QUEUE_OLDEST_AGE.labels(queue=name).set(oldest)
            QUEUE_CONSUMERS.labels(queue=name).set(live)
            QUEUE_WAITING_WITHOUT_CONSUMER.labels(queue=name).set(depth if live == 0 else 0)

    def _oldest_age(self, queue: str, tail: list[str], now: float) -> float:
        if not tail:
            self._first_seen.pop(queue, None)
            return 0.0
        for raw in reversed(tail):  # index -1 (the oldest) first
            created = message_created_s(raw)
            if created is not None:
                self._first_seen.pop(queue, None)
                return max(0.0, now - created)
        oldest = tail[-1]
        seen = self._first_seen.get(queue)
        if seen is None or seen[0] != oldest:
            seen = self._first_seen[queue] = (oldest, now)
        return now - seen[1]
