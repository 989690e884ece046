"""Delayed webhook retries: a Redis sorted set scored by due time, and a thread that re-sends due items.

Why not Celery's ``countdown``/``eta``: with the Redis broker an ETA message is taken off the queue
at once and held, unacknowledged, in one worker's memory until it is due. If it is not due within
the broker's visibility timeout, Redis hands it to another worker as well (the same delivery runs
twice), and a worker restart drops it back on the queue to be held again; retries minutes to a day
away are exactly that case (a long-standing Celery/kombu issue). Here a waiting retry is a member
of ``mlqueue:webhooks:delayed`` in Redis, with no worker holding it.

``claim_due`` is one Lua script (read the due members, then lease them), so two workers polling at
once never claim the same item. A claimed item is not removed but leased: its score moves
``lease_s`` ahead, and ``ack`` removes it once its task was sent. A worker that dies between the
claim and the send leaves the item to be claimed again when the lease runs out (at-least-once; the
delivery side drops duplicates of an event already delivered).

Every ``webhooks`` worker runs a ``Scheduler`` (see ``worker.celery_app``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from shared.redis_keys import WEBHOOKS_DELAYED

log = logging.getLogger(__name__)

# KEYS[1] the set; ARGV[1] now, ARGV[2] limit, ARGV[3] lease until. Returns the claimed members.
CLAIM_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[3], member)
end
return due
"""


@dataclass(frozen=True)
class DelayedItem:
    member: str  # the sorted-set member, for ``ack``
    payload: dict[str, Any]


class DelayedQueue:
    def __init__(self, client: redis.Redis, key: str = WEBHOOKS_DELAYED, ttl_s: int = 7 * 86_400) -> None:
        """``ttl_s``: the key's TTL, refreshed on every write; keep it above the longest delay."""
        self.r = client
        self.key = key
        self.ttl_s = ttl_s
        self._claim = client.register_script(CLAIM_LUA)

    @staticmethod
    def encode(payload: dict[str, Any], item_id: str | None = None) -> str:
        """The member: ``item_id`` makes it stable, so scheduling the same item twice (a task that
        ran twice) leaves one entry; without one it is random and every call adds an entry."""
        return json.dumps(
            {"id": item_id or uuid.uuid4().hex, "payload": payload}, sort_keys=True, separators=(",", ":")
        )

    def schedule(self, payload: dict[str, Any], due_at: float, item_id: str | None = None) -> bool:
        """Add an item due at ``due_at`` (epoch seconds). False if the same ``item_id`` and payload
        are already waiting (it keeps its first due time)."""
        with self.r.pipeline(transaction=True) as pipe:
            pipe.zadd(self.key, {self.encode(payload, item_id): due_at}, nx=True)
            pipe.expire(self.key, self.ttl_s)
            added, _ = pipe.execute()
        return bool(added)

    def claim_due(self, now: float | None = None, limit: int = 100, lease_s: float = 30.0) -> list[DelayedItem]:
        """Atomically take up to ``limit`` items due by ``now``; each stays leased for ``lease_s``
        and comes back if not ``ack``-ed by then."""
        now = time.time() if now is None else now
        members = self._claim(keys=[self.key], args=[repr(now), int(limit), repr(now + lease_s)])
        items = []
        for raw in members:
            member = raw.decode() if isinstance(raw, bytes) else raw
            try:
                items.append(DelayedItem(member, json.loads(member)["payload"]))
            except (ValueError, KeyError, TypeError):
                log.error("delayed.bad_member dropped=%r", member[:200])
                self.r.zrem(self.key, member)
        return items

    def ack(self, items: list[DelayedItem]) -> None:
        if items:
            self.r.zrem(self.key, *(i.member for i in items))

    def __len__(self) -> int:
        return int(self.r.zcard(self.key))


class Scheduler:
    """Polls ``queue`` and hands every due item to ``dispatch`` (which sends the Celery task)."""

    def __init__(
        self,
        queue: DelayedQueue,
        dispatch: Callable[[dict[str, Any]], None],
        interval_s: float = 0.25,
        batch: int = 100,
    ) -> None:
        self.queue = queue
        self.dispatch = dispatch
        self.interval_s = interval_s
        self.batch = batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="webhook-scheduler", daemon=True)

    def start(self) -> Scheduler:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def run_once(self, now: float | None = None) -> int:
        """Claim and dispatch what is due; returns how many were dispatched."""
        items = self.queue.claim_due(now, self.batch)
        sent = []
        for item in items:
            try:
                self.dispatch(item.payload)
            except Exception:  # the lease brings it back; keep going with the others
                log.exception("delayed.dispatch_failed")
                continue
            sent.append(item)
        self.queue.ack(sent)
        return len(sent)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                while self.run_once() >= self.batch and not self._stop.is_set():
                    pass  # a backlog: drain it without sleeping
            except redis.RedisError as exc:
                log.warning("delayed.poll_failed error=%s", exc)
                self._stop.wait(min(5.0, self.interval_s * 8))
            except Exception:  # the thread must survive anything
                log.exception("delayed.poll_failed")
            self._stop.wait(self.interval_s)
