"""Group commit: single jobs submitted at the same time are written together.

A job's submission ends in one Redis transaction (its record, indexes and Celery message). Under
load, many requests reach that point while one transaction is in flight; rather than queueing a
transaction each, they gather and are written as one: every record, and **one** Celery message
carrying all their ids (``predict_many``). The worker then reads, runs and finishes them in one
round trip each and one forward pass, instead of paying Celery's per-message cost N times.

Nothing waits when the API is idle: the first arrival is written at once, alone. Each request
still answers only after its own record is committed, so a ``202`` always means "stored". Groups
are per queue (their message goes to one queue) and at most ``MAX_GROUP`` jobs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from shared.celery_messages import jobs_message
from shared.store import AsyncJobStore, NewJob

log = logging.getLogger(__name__)

MAX_GROUP = 64  # jobs per transaction and message: about one forward pass of a tabular model's batch


@dataclass
class _Pending:
    """The jobs waiting for the next transaction of one queue, and the task writing them."""

    jobs: list[tuple[NewJob, str | None, asyncio.Future[None]]] = field(default_factory=list)
    writer: asyncio.Task[None] | None = None


class GroupCommit:
    def __init__(self, store: AsyncJobStore, publisher: Celery, max_group: int = MAX_GROUP) -> None:
        self.store = store
        self.publisher = publisher
        self.max_group = max_group
        self._queues: dict[str, _Pending] = {}

    async def create(self, new: NewJob, request_id: str | None = None) -> None:
        """Write ``new`` (with the jobs that arrive with it); returns once it is committed."""
        pending = self._queues.setdefault(new.job.queue, _Pending())
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending.jobs.append((new, request_id, done))
        if pending.writer is None:
            pending.writer = asyncio.create_task(self._write(new.job.queue, pending))
        await asyncio.shield(done)  # a client gone mid-write must not cancel its group's commit

    async def _write(self, queue: str, pending: _Pending) -> None:
        """Write groups until nobody waits: arrivals during one transaction form the next."""
        try:
            while pending.jobs:
                group, pending.jobs = pending.jobs[: self.max_group], pending.jobs[self.max_group :]
                try:
                    await self._commit(queue, group)
                except Exception as exc:  # noqa: BLE001 - each request raises it (a 503 for a Redis outage)
                    for _, _, done in group:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for _, _, done in group:
                        if not done.done():
                            done.set_result(None)
        finally:
            pending.writer = None
            for _, _, done in pending.jobs:  # only after a bug above: never leave a request hanging
                if not done.done():
                    done.set_exception(RuntimeError("group commit stopped"))

    async def _commit(self, queue: str, group: list[tuple[NewJob, str | None, asyncio.Future[None]]]) -> None:
        ids = [new.job.id for new, _, _ in group]
        headers: dict[str, Any] = {"request_id": group[0][1]} if len(group) == 1 else {}
        message = jobs_message(self.publisher, queue, ids, time.time(), headers)
        await self.store.create_many([new for new, _, _ in group], [message])
