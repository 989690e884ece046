"""The sweeper: the job record and the scheduler's line are the truth, a ticket only a wake-up.

Work is claimed atomically from a queue's line into its ``claimed`` hash, with the worker
incarnation that claimed it (``shared.scheduler``): claimed work is never nowhere. One worker at a
time (a Redis lease) looks every ``sweep_interval_s`` at each model queue and:

- puts back in line, at its old place, the work claimed by an incarnation that no longer beats
  (SIGKILL, OOM, a lost host), or claimed longer ago than ``task_time_limit_s + recover_after_s``
  (a run that neither finished nor gave its work back: a wedged thread);
- fails with ``poison_job`` the work claimed ``max_deliveries`` times without finishing, instead
  of putting it back: an input that kills its worker must not kill every worker in turn. It is a
  dead letter: ``GET /v1/jobs?status=failed&reason=poison_job`` lists them;
- sends a ticket when work waits and no ticket does (one lost with a dead worker's prefetch);
- fails with ``enqueue_failed`` a batch whose chunks were never queued (the API died writing their
  inputs) after ``recover_after_s``;
- forgets the fair-share clocks of keys that have fallen behind the queue's virtual time.

Putting work back twice is harmless: a run that finds its job terminal does nothing, the final
write is a compare-and-set, and a chunk counts once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

import redis
from celery import Celery

from shared.batch_store import BatchStore
from shared.celery_messages import ticket_message
from shared.errors import ErrorCode
from shared.jobs import JobStatus, WebhookEvent
from shared.presence import WorkerPresence
from shared.queues import MODEL_QUEUES
from shared.redis_connection import text, texts
from shared.redis_keys import SWEEPER_LEASE, queue_keys, worker_key
from shared.scheduler import Scheduler, parse_member
from shared.settings import Settings
from shared.store import JobStore
from shared.webhook_events import send_event
from worker import metrics as worker_metrics

log = logging.getLogger(__name__)

POISON = {"code": ErrorCode.POISON_JOB, "message": "its worker died every time it ran (delivered too often)"}

# Take the lease, or renew it if it is ours. KEYS[1] lease; ARGV[1] holder, ARGV[2] ttl ms.
LEASE_LUA = """
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


@dataclass
class SweepReport:
    """What one pass did, by member (for logs, metrics and tests)."""

    requeued: dict[str, str] = field(default_factory=dict)  # member -> reason
    dead_letters: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # batches never queued
    tickets: int = 0


def runner_alive(client: redis.Redis, runner: str, cache: dict[str, bool]) -> bool:
    """Whether the worker incarnation ``"{hostname}#{incarnation}"`` still beats."""
    if runner not in cache:
        hostname, _, incarnation = runner.partition("#")
        raw = client.get(worker_key(hostname)) if hostname else None
        presence = WorkerPresence.parse(raw) if raw else None
        cache[runner] = presence is not None and presence.incarnation == incarnation
    return cache[runner]


class Sweeper:
    def __init__(self, app: Celery, client: redis.Redis, settings: Settings, holder: str | None = None) -> None:
        self.app = app
        self.r = client
        self.settings = settings
        self.holder = holder or uuid.uuid4().hex
        self._lease = client.register_script(LEASE_LUA)
        self._store = JobStore(client)
        self._batches = BatchStore(client, client, settings.job_ttl_s)
        self._scheduler = Scheduler(client, settings.job_ttl_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweeper", daemon=True)

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:  # hand the lease over now rather than when it expires
            if self.r.get(SWEEPER_LEASE) == self.holder:
                self.r.delete(SWEEPER_LEASE)
        except redis.RedisError:
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.sweep_interval_s):
            try:
                if self.take_lease():
                    self.sweep()
            except redis.RedisError as exc:  # Redis restarting: the next pass tries again
                log.warning("sweeper.pass_failed error=%s", exc)
            except Exception:  # a sweeper that dies silently would void the guarantee
                log.exception("sweeper.pass_failed")

    def take_lease(self) -> bool:
        ttl_ms = int(self.settings.sweep_interval_s * 3 * 1000)
        return bool(self._lease(keys=[SWEEPER_LEASE], args=[self.holder, ttl_ms]))

    # -- one pass --------------------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> SweepReport:
        """One pass over every model queue (the caller holds the lease)."""
        now = time.time() if now is None else now
        report = SweepReport()
        alive: dict[str, bool] = {}
        for queue in MODEL_QUEUES:
            self._recover(queue.value, now, alive, report)
            self._wake(queue.value, report)
            self._fail_unqueued(queue.value, now, report)
            self._scheduler.prune_clock(queue.value)
        return report

    def _recover(self, queue: str, now: float, alive: dict[str, bool], report: SweepReport) -> None:
        bound_s = self.settings.task_time_limit_s + self.settings.recover_after_s
        raw = self.r.hgetall(queue_keys(queue).claimed)
        for member, claim in ((text(m), text(c)) for m, c in raw.items()):
            runner, _, at = claim.rpartition("|")
            if runner_alive(self.r, runner, alive):
                if now - float(at or 0) <= bound_s:
                    continue
                reason = "claim_expired"
            else:
                reason = "runner_died"
            outcome = self._scheduler.requeue(queue, member, claim, self.settings.max_deliveries)
            if outcome == 1:
                report.requeued[member] = reason
                worker_metrics.record_recovered(queue, reason)
                log.warning("job.recovered member=%s queue=%s reason=%s", member, queue, reason)
            elif outcome == 2 and self._dead_letter(queue, member, now):
                report.dead_letters.append(member)
        if report.requeued:
            self._send_ticket(queue)
            report.tickets += 1

    def _wake(self, queue: str, report: SweepReport) -> None:
        """Work waiting with no ticket queued: its tickets went down with a worker (prefetched), or
        every worker is busy draining (then the extra ticket waits its turn, and costs nothing)."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.zcard(queue_keys(queue).ready)
            pipe.llen(queue)
            waiting, tickets = pipe.execute()
        if waiting and not tickets:
            self._send_ticket(queue)
            report.tickets += 1

    def _send_ticket(self, queue: str) -> None:
        self.r.rpush(queue, ticket_message(self.app, queue, {"recovered": True}))  # the consuming end

    def _dead_letter(self, queue: str, member: str, now: float) -> bool:
        """Delivered too often: fail it (a single job; a chunk's every item) and forget it. False
        when it had finished meanwhile (its last run ended just before its worker died)."""
        named = parse_member(member)
        job_id, chunk = named.job_id, named.chunk
        job = self._store.get(job_id)
        meta = self._scheduler.meta(queue, member) or {}
        failed = False
        if job is not None and chunk is None:
            fields = {"status": JobStatus.FAILED, "completed_at": now, "error": POISON}
            failed = self._store.transition(job_id, (JobStatus.QUEUED, JobStatus.RUNNING), fields)
            if failed:
                worker_metrics.record_job_finished(job.model, fields)
                self._notify(job_id)
        elif job is not None and chunk is not None:
            start = chunk * (job.chunk_size or 0)
            rows = range(start, start + meta.get("n", 0))
            lines = [json.dumps({"index": i, "status": "failed", "error": POISON}) for i in rows]
            recorded = self._batches.complete_chunk(job_id, chunk, lines, len(lines), 0.0)
            failed = recorded.counted
            if recorded.final:
                self._notify(job_id)
        self._scheduler.release(queue, [member])
        if failed:
            worker_metrics.record_recovered(queue, ErrorCode.POISON_JOB)
            log.error("job.dead_letter member=%s queue=%s", member, queue)
        return failed

    def _notify(self, job_id: str) -> None:
        job = self._store.get(job_id)
        if job is not None:
            try:
                send_event(self.app, job, WebhookEvent.COMPLETED)
            except Exception:  # a webhook must never stop the sweeper
                log.exception("webhook.enqueue_failed job_id=%s", job_id)

    def _fail_unqueued(self, queue: str, now: float, report: SweepReport) -> None:
        pending = queue_keys(queue).pending
        for job_id in texts(self.r.zrangebyscore(pending, "-inf", now - self.settings.recover_after_s)):
            fields = {
                "status": JobStatus.FAILED,
                "completed_at": now,
                "error": {"code": ErrorCode.ENQUEUE_FAILED, "message": "the batch's inputs were not completely stored"},
            }
            if self._store.transition(job_id, (JobStatus.QUEUED,), fields):
                report.failed.append(job_id)
                log.warning("batch.enqueue_failed job_id=%s", job_id)
            self.r.zrem(pending, job_id)
