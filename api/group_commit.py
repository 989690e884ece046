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

import time
from typing import Any

from celery import Celery

from api.coalesce import Coalescer
from shared.celery_messages import jobs_message
from shared.store import AsyncJobStore, NewJob

MAX_GROUP = 64  # jobs per transaction and message: about one forward pass of a tabular model's batch


class GroupCommit:
    def __init__(self, store: AsyncJobStore, publisher: Celery, max_group: int = MAX_GROUP) -> None:
        self.store = store
        self.publisher = publisher
        self.max_group = max_group
        self._queues: dict[str, Coalescer[tuple[NewJob, str | None], None]] = {}

    async def create(self, new: NewJob, request_id: str | None = None) -> None:
        """Write ``new`` (with the jobs that arrive with it); returns once it is committed."""
        queue = new.job.queue
        if queue not in self._queues:
            self._queues[queue] = Coalescer(lambda group: self._commit(queue, group), self.max_group)
        await self._queues[queue].call((new, request_id))

    async def _commit(self, queue: str, group: list[tuple[NewJob, str | None]]) -> list[None]:
        ids = [new.job.id for new, _ in group]
        headers: dict[str, Any] = {"request_id": group[0][1]} if len(group) == 1 else {}
        message = jobs_message(self.publisher, queue, ids, time.time(), headers)
        await self.store.create_many([new for new, _ in group], [message])
        return [None] * len(group)
