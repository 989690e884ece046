"""Job events for waiting requests: one Redis pub/sub connection per API process, fanned out.

Waiters register a queue for a job id and are woken by the worker's transition events, so
``Prefer: wait`` never polls. After a reconnect every waiter gets a ``resync`` and re-reads the
job, because events published while the connection was down are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.redis_keys import EVENTS_CHANNEL

log = logging.getLogger(__name__)

RESYNC: dict[str, Any] = {"resync": True}

# What a subscriber receives: the events' JSON ({"id", "status", "job"?}), or RESYNC after a reconnect.
EventQueue = asyncio.Queue[dict[str, Any]]


class JobEvents:
    def __init__(self, client: aredis.Redis) -> None:
        self.client = client
        self._waiters: dict[str, set[EventQueue]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="job-events")

    async def stop(self) -> None:
        """Cancel the listener and wait for it. A cancel that lands while redis-py is connecting can
        come back as a connection error (and be retried as one), so the cancel is repeated until the
        task is done: a shutdown must never hang on it."""
        task = self._task
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if task is not None and not task.cancelled():
            with contextlib.suppress(Exception):
                task.result()

    @contextlib.contextmanager
    def subscribe(self, job_id: str) -> Iterator[EventQueue]:
        q: EventQueue = asyncio.Queue()
        self._waiters.setdefault(job_id, set()).add(q)
        try:
            yield q
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(q)
                if not waiters:
                    del self._waiters[job_id]

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(EVENTS_CHANNEL)
                self._broadcast(RESYNC)
                backoff = 0.1
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        self._dispatch(message["data"])
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise asyncio.CancelledError from exc  # a cancel redis-py turned into an error
                log.warning("events.disconnected error=%s retry_in=%.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _dispatch(self, data: str) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            return
        for q in self._waiters.get(event.get("id"), ()):
            q.put_nowait(event)

    def _broadcast(self, event: dict[str, Any]) -> None:
        for waiters in self._waiters.values():
            for q in waiters:
                q.put_nowait(event)
