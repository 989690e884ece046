"""Group commit: single jobs submitted at the same time are written together.

A job's submission ends in one Redis transaction (its record, indexes, its place in line and a
ticket). Under load, many requests reach that point while one transaction is in flight; rather
than queueing a transaction each, they gather and are written as one: every record, every place
in line (one script call), and **one** ticket. The worker that takes the ticket claims them
together and runs them in one forward pass, instead of paying Celery's per-message cost N times.

Nothing waits when the API is idle: the first arrival is written at once, alone. Each request
still answers only after its own record is committed, so a ``202`` always means "stored". Groups
are per queue (their ticket goes to one queue) and at most ``MAX_GROUP`` jobs.
"""

from __future__ import annotations

from celery import Celery

from api.backlog import info
from api.coalesce import Coalescer
from shared.celery_messages import ticket_message
from shared.jobs import QueueInfo
from shared.scheduler import Work
from shared.store import AsyncJobStore, Enqueue, NewJob

MAX_GROUP = 64  # jobs per transaction and ticket: about one forward pass of a tabular model's batch

Pending = tuple[NewJob, Work, str | None]  # the job, its place in line, the request id


class GroupCommit:
    def __init__(self, store: AsyncJobStore, publisher: Celery, max_group: int = MAX_GROUP) -> None:
        self.store = store
        self.publisher = publisher
        self.max_group = max_group
        self._queues: dict[str, Coalescer[Pending, QueueInfo]] = {}

    async def create(self, new: NewJob, work: Work, request_id: str | None = None) -> QueueInfo:
        """Write ``new`` and queue it (with the jobs that arrive with it); returns once it is
        committed, with its place in line."""
        queue = new.job.queue
        if queue not in self._queues:
            self._queues[queue] = Coalescer(lambda group: self._commit(queue, group), self.max_group)
        return await self._queues[queue].call((new, work, request_id))

    async def _commit(self, queue: str, group: list[Pending]) -> list[QueueInfo]:
        headers = {"request_id": group[0][2]} if len(group) == 1 else {}
        ticket = ticket_message(self.publisher, queue, headers)
        work = Enqueue(queue, [w for _, w, _ in group], [ticket])
        ranked = await self.store.create_many([new for new, _, _ in group], work)
        assert ranked is not None
        return [info(ahead, ranked.drain_rate) for ahead in ranked.ahead]
