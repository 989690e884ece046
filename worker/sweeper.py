"""The sweeper: the job record is the source of truth, a task message only its wake-up.

Every message the API sends is also recorded in ``mlqueue:inflight:{queue}`` (task id -> when it
was first sent, ``shared.store.push_messages``). One worker at a time (a Redis lease) reads that
index every ``sweep_interval_s`` and, for each piece of work whose message has left the queue,
decides from the job record where it stands:

- finished (the job terminal, or the chunk in the batch's done set), or gone: forgotten;
- held by a consumer (in kombu's ``unacked`` hash) and being run by a live worker incarnation,
  or reserved for less than ``recover_after_s``: left alone;
- held for a dead incarnation (SIGKILL, OOM, a lost host), or reserved longer than
  ``recover_after_s`` without starting: sent again, and the stale ``unacked`` entry dropped in the
  same transaction, so kombu's own visibility-timeout restore does not send it a third time;
- nowhere (kombu's Redis transport removes a message with BRPOP before it records it in
  ``unacked``: a consumer killed in between takes the message with it): sent again once two passes
  in a row have found it so (the first could have caught it between those two commands);
- recorded as running on a live worker longer than ``task_time_limit_s`` + ``recover_after_s``, with
  no message left anywhere: sent again. That worker gave the run up without a word, because it
  could not write one: a Redis failover (``shared.redis_connection``) cut it off mid-run, and the
  retry it tried to send failed too;
- a batch whose chunk messages were never sent (the API died while writing them): failed, with
  ``enqueue_failed``, after ``recover_after_s``.

Whether a message "has left the queue" needs no scan: messages leave a list in the order they
were sent, so everything sent before the oldest message still waiting (``LINDEX queue -1``, whose
send mark is in its headers) has been taken. Re-sent messages keep their first send mark and go
to the consuming end (RPUSH), so that order holds. Sending twice is harmless: a run that finds its
job terminal does nothing, the final write is a compare-and-set, and a chunk counts once.
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
from kombu.transport.redis import Channel

from shared.batch_store import done_key, runners_key
from shared.celery_messages import chunk_message, jobs_message, members_of, parse_member, sent_at_of
from shared.jobs import JobKind, JobStatus
from shared.presence import worker_key
from shared.queues import MODEL_QUEUES
from shared.settings import Settings
from shared.store import PREFIX, JobStore, inflight_key, job_key
from worker import metrics as worker_metrics

log = logging.getLogger(__name__)

LEASE_KEY = f"{PREFIX}:sweeper:lease"
SCAN_LIMIT = 2000  # in-flight entries read per round trip
MAX_PAGES = 100  # per queue per pass: 200,000 entries, far above what finishes between two passes

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


@dataclass(frozen=True)
class Held:
    """A message in kombu's ``unacked`` hash: reserved by a consumer, not yet acknowledged."""

    tag: str
    since: float


@dataclass
class WorkState:
    """What the records say of one in-flight entry (a job, or a chunk of a batch)."""

    status: str | None  # None: the job's record is gone (expired)
    kind: str | None
    runner: str | None  # who runs the job (a single job; a batch's first chunk)
    chunk_done: bool = False
    chunk_runner: str | None = None
    started_at: float | None = None


@dataclass
class SweepReport:
    """What one pass did, by task id (for logs, metrics and tests)."""

    resent: dict[str, str] = field(default_factory=dict)  # task id -> reason
    failed: list[str] = field(default_factory=list)
    forgotten: int = 0
    suspects: int = 0


def runner_alive(client: redis.Redis, runner: str | None, cache: dict[str, bool]) -> bool | None:
    """Whether the worker incarnation ``"{hostname}#{incarnation}"`` still beats; None if unknown."""
    if not runner:
        return None
    if runner not in cache:
        hostname, _, incarnation = runner.partition("#")
        raw = client.get(worker_key(hostname))
        cache[runner] = bool(raw) and json.loads(raw).get("incarnation") == incarnation
    return cache[runner]


class Sweeper:
    def __init__(self, app: Celery, client: redis.Redis, settings: Settings, holder: str | None = None) -> None:
        self.app = app
        self.r = client
        self.settings = settings
        self.holder = holder or uuid.uuid4().hex
        self._lease = client.register_script(LEASE_LUA)
        self._store = JobStore(client)
        self._suspects: set[str] = set()  # found nowhere in the previous pass
        self._abandoned_after_s = settings.task_time_limit_s + settings.recover_after_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweeper", daemon=True)

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:  # hand the lease over now rather than when it expires
            if self.r.get(LEASE_KEY) == self.holder:
                self.r.delete(LEASE_KEY)
        except redis.RedisError:
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.sweep_interval_s):
            try:
                if self.take_lease():
                    self.sweep()
                else:
                    self._suspects.clear()  # another sweeper holds the lease: its passes count, not ours
            except redis.RedisError as exc:  # Redis restarting: the next pass tries again
                log.warning("sweeper.pass_failed error=%s", exc)
            except Exception:  # a sweeper that dies silently would void the guarantee
                log.exception("sweeper.pass_failed")

    def take_lease(self) -> bool:
        ttl_ms = int(self.settings.sweep_interval_s * 3 * 1000)
        return bool(self._lease(keys=[LEASE_KEY], args=[self.holder, ttl_ms]))

    # -- one pass --------------------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> SweepReport:
        """One pass over every model queue (the caller holds the lease)."""
        now = time.time() if now is None else now
        report = SweepReport()
        held = self.held_messages()
        alive: dict[str, bool] = {}
        suspects: set[str] = set()
        for queue in MODEL_QUEUES:
            self._sweep_queue(queue.value, now, held, alive, suspects, report)
        self._suspects = suspects
        report.suspects = len(suspects)
        return report

    def held_messages(self) -> dict[str, Held]:
        """The work in messages that consumers hold, by in-flight member (a job id, or a chunk's
        "{job id}.{chunk}"): a handful of messages per worker, prefetch being 1."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hgetall(Channel.unacked_key)
            pipe.zrange(Channel.unacked_index_key, 0, -1, withscores=True)
            entries, index = pipe.execute()
        since = dict(index)
        held: dict[str, Held] = {}
        for tag, value in entries.items():
            try:
                headers = json.loads(value)[0]["headers"]
            except (ValueError, KeyError, IndexError, TypeError):
                continue
            for member in members_of(headers):
                held[member] = Held(tag, since.get(tag, 0.0))
        return held

    def _sweep_queue(
        self,
        queue: str,
        now: float,
        held: dict[str, Held],
        alive: dict[str, bool],
        suspects: set[str],
        report: SweepReport,
    ) -> None:
        index = inflight_key(queue)
        with self.r.pipeline(transaction=True) as pipe:
            pipe.llen(queue)
            pipe.lindex(queue, -1)
            waiting, oldest = pipe.execute()
        oldest_waiting = sent_at_of(oldest) if waiting else float("inf")  # empty: every message was taken
        if oldest_waiting is None:
            return  # the next message out carries no send mark (not ours): no order to rely on this pass
        offset = 0  # entries kept (running, suspects) stay in the range: page past them
        for _ in range(MAX_PAGES):
            entries = self.r.zrangebyscore(
                index, "-inf", f"({oldest_waiting}", start=offset, num=SCAN_LIMIT, withscores=True
            )
            forgotten = self._judge(queue, entries, oldest_waiting, now, held, alive, suspects, report)
            if forgotten:
                self.r.zrem(index, *forgotten)
                report.forgotten += len(forgotten)
            offset += len(entries) - len(forgotten)
            if len(entries) < SCAN_LIMIT:
                break

    def _judge(
        self,
        queue: str,
        entries: list[tuple[str, float]],
        oldest_waiting: float,
        now: float,
        held: dict[str, Held],
        alive: dict[str, bool],
        suspects: set[str],
        report: SweepReport,
    ) -> list[str]:
        """Re-send or fail what needs it among ``entries``; returns those to forget (finished)."""
        forget: list[str] = []
        for (task_id, sent_at), state in zip(entries, self._states(entries) if entries else [], strict=True):
            job_id, chunk = parse_member(task_id)
            if state.status is None or JobStatus(state.status).is_terminal() or state.chunk_done:
                forget.append(task_id)
                continue
            if chunk is None and state.kind == JobKind.BATCH.value:  # its chunks' messages were never sent
                if state.status != JobStatus.QUEUED.value:
                    forget.append(task_id)
                elif now - sent_at > self.settings.recover_after_s:  # the API died writing them
                    self._fail_unsent(job_id, now)
                    report.failed.append(job_id)
                    forget.append(task_id)
                continue
            reason = self._verdict(task_id, chunk, state, held, alive, now, suspects)
            if reason is not None:
                self._resend(queue, task_id, min(sent_at, oldest_waiting), held.get(task_id), reason)
                report.resent[task_id] = reason
        return forget

    def _states(self, entries: list[tuple[str, float]]) -> list[WorkState]:
        with self.r.pipeline(transaction=False) as pipe:
            for task_id, _ in entries:
                job_id, chunk = parse_member(task_id)
                pipe.hmget(job_key(job_id), "status", "kind", "runner", "started_at")
                if chunk is not None:
                    pipe.sismember(done_key(job_id), chunk)
                    pipe.hget(runners_key(job_id), chunk)
            replies = iter(pipe.execute())
        states = []
        for task_id, _ in entries:
            status, kind, runner, started_at = next(replies)
            state = WorkState(status, json.loads(kind) if kind else None, json.loads(runner) if runner else None)
            state.started_at = json.loads(started_at) if started_at else None
            if parse_member(task_id)[1] is not None:
                state.chunk_done, state.chunk_runner = bool(next(replies)), next(replies)
            states.append(state)
        return states

    def _verdict(
        self,
        task_id: str,
        chunk: int | None,
        state: WorkState,
        held: dict[str, Held],
        alive: dict[str, bool],
        now: float,
        suspects: set[str],
    ) -> str | None:
        """Why this work must be sent again, or None to leave it."""
        if chunk is not None:
            running_on = state.chunk_runner
        else:
            running_on = state.runner if state.status == JobStatus.RUNNING.value else None
        runner_ok = runner_alive(self.r, running_on, alive)
        hold = held.get(task_id)
        if hold is not None:
            if runner_ok is False:
                return "runner_died"
            if runner_ok is None and now - hold.since > self.settings.recover_after_s:
                return "reserved_too_long"  # its consumer died before starting it, or is wedged
            return None
        if runner_ok:
            if chunk is None and state.started_at and now - state.started_at > self._abandoned_after_s:
                return "run_abandoned"  # no message, and running past any run's limit: given up
            return None  # running on a live worker (its message is being acknowledged right now)
        if task_id in self._suspects:
            return "message_lost"
        suspects.add(task_id)
        return None

    def _resend(self, queue: str, task_id: str, sent_at: float, hold: Held | None, reason: str) -> None:
        job_id, chunk = parse_member(task_id)
        headers = {"recovered": True}
        if chunk is None:
            message = jobs_message(self.app, queue, [job_id], sent_at, headers)
        else:
            message = chunk_message(self.app, queue, job_id, chunk, sent_at, headers)
        with self.r.pipeline(transaction=True) as pipe:
            if hold is not None:
                pipe.hdel(Channel.unacked_key, hold.tag)
                pipe.zrem(Channel.unacked_index_key, hold.tag)
            pipe.rpush(queue, message.body)  # the consuming end: it was due long ago
            pipe.execute()
        worker_metrics.record_recovered(queue, reason)
        log.warning("job.recovered task_id=%s queue=%s reason=%s", task_id, queue, reason)

    def _fail_unsent(self, job_id: str, now: float) -> None:
        fields = {
            "status": JobStatus.FAILED,
            "completed_at": now,
            "error": {"code": "enqueue_failed", "message": "the batch's inputs were not completely stored"},
        }
        self._store.transition(job_id, (JobStatus.QUEUED,), fields)
        log.warning("batch.enqueue_failed job_id=%s", job_id)
