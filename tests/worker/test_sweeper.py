"""The sweeper against a real Redis: each state work can be left in by a crash.

The states are made the way crashes leave them (work claimed by an incarnation that no longer
beats, a ticket gone with a worker's prefetch, a batch whose chunks were never queued); the
end-to-end SIGKILL test is ``tests/worker/test_worker_kills.py``, the poison-input one
``tests/worker/test_dead_letters.py``.
"""

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
import redis

from shared.celery_app import make_celery
from shared.celery_messages import ticket_message
from shared.jobs import Job, JobKind, JobProgress, JobStatus, new_job_id
from shared.redis_keys import SWEEPER_LEASE, job_key, out_key, queue_keys, worker_key
from shared.scheduler import Scheduler, Work, chunk_member
from shared.store import AsyncJobStore, Enqueue, NewJob, async_redis_client, redis_client
from worker.sweeper import Sweeper


def make_job(**kw) -> Job:
    return Job(**{"id": new_job_id(), "model": "iris", "version": 1, "queue": "cpu", "created_at": time.time(), **kw})


def create(settings, job: Job, members: list[str] | None = None, rows: int = 1) -> None:
    """Write ``job`` and put its work in line, as the API does; ``members=[]`` writes a batch whose
    chunks are not queued yet (pending)."""
    members = [job.id] if members is None else members

    async def scenario():
        client = async_redis_client(settings)
        try:
            store = AsyncJobStore(client, settings)
            if not members:
                await store.create(job, None)
                return
            ticket = ticket_message(make_celery(settings, publisher=True), job.queue)
            work = Enqueue(job.queue, [Work(m, "key:test", rows=rows) for m in members], [ticket])
            await store.create_many([NewJob(job, [5.1, 3.5, 1.4, 0.2])], work)
        finally:
            await client.aclose()

    asyncio.run(scenario())


@pytest.fixture
def r(redis_settings) -> Iterator[redis.Redis]:
    client = redis_client(redis_settings)
    yield client
    client.close()


@pytest.fixture
def settings(redis_settings):
    return redis_settings.model_copy(update={"recover_after_s": 30.0, "task_time_limit_s": 60, "max_deliveries": 3})


@pytest.fixture
def sweeper(settings, r) -> Sweeper:
    return Sweeper(make_celery(settings), r, settings, holder="test")


def beat(r: redis.Redis, hostname: str, incarnation: str) -> None:
    r.set(worker_key(hostname), json.dumps({"hostname": hostname, "incarnation": incarnation}), ex=30)


def claim(r: redis.Redis, runner: str, max_items: int = 64) -> list[str]:
    """What a worker does with a ticket: take it, claim the work next in line."""
    r.rpop("cpu")
    return [c.member for c in Scheduler(r).claim("cpu", runner, max_items)]


def ready(r: redis.Redis) -> list[str]:
    return r.zrange(queue_keys("cpu").ready, 0, -1)


def test_work_claimed_by_a_dead_incarnation_goes_back_to_its_place_with_a_ticket(settings, r, sweeper):
    first, second = make_job(), make_job()
    create(settings, first)
    create(settings, second)
    beat(r, "w1@host", "new")  # restarted under the same hostname: another incarnation
    assert claim(r, "w1@host#old", 1) == [first.id]
    r.delete("cpu")
    report = sweeper.sweep()
    assert report.requeued == {first.id: "runner_died"}
    assert ready(r) == [first.id, second.id]  # ahead of the job sent after it, as before
    assert r.llen("cpu") == 1  # one ticket wakes a worker for it
    assert not r.hgetall(queue_keys("cpu").claimed)


def test_work_claimed_by_a_live_worker_is_left_alone(settings, r, sweeper):
    job = make_job()
    create(settings, job)
    beat(r, "w1@host", "abc")
    assert claim(r, "w1@host#abc") == [job.id]
    report = sweeper.sweep()
    assert report.requeued == {} and report.tickets == 0
    assert r.hget(queue_keys("cpu").claimed, job.id).startswith("w1@host#abc|")


def test_a_claim_older_than_any_run_can_last_is_put_back_even_for_a_live_worker(settings, r, sweeper):
    job = make_job()
    create(settings, job)
    beat(r, "w1@host", "abc")
    claim(r, "w1@host#abc")
    later = time.time() + settings.task_time_limit_s + settings.recover_after_s + 1
    assert sweeper.sweep(now=later).requeued == {job.id: "claim_expired"}
    assert ready(r) == [job.id]


def test_a_job_that_killed_its_worker_max_deliveries_times_is_a_dead_letter(settings, r, sweeper):
    job = make_job()
    create(settings, job)
    for attempt in range(1, settings.max_deliveries + 1):
        assert claim(r, f"w1@host#dead{attempt}") == [job.id]
        report = sweeper.sweep()
        if attempt < settings.max_deliveries:
            assert report.requeued == {job.id: "runner_died"}
    assert report.dead_letters == [job.id] and report.requeued == {}
    record = r.hgetall(job_key(job.id))
    assert record["status"] == JobStatus.FAILED.value
    assert json.loads(record["error"])["code"] == "poison_job"
    assert ready(r) == [] and not r.hgetall(queue_keys("cpu").meta)  # forgotten, not put back


def test_a_chunk_that_killed_its_worker_too_often_fails_its_items_and_the_batch_finishes(settings, r, sweeper):
    job = make_job(kind=JobKind.BATCH, progress=JobProgress(total=3), chunks=1, chunk_size=3)
    create(settings, job, [chunk_member(job.id, 0)], rows=3)
    r.hset(job_key(job.id), "status", "running")  # its first chunk began it
    for attempt in range(settings.max_deliveries):
        claim(r, f"w1@host#dead{attempt}")
        report = sweeper.sweep()
    assert report.dead_letters == [chunk_member(job.id, 0)]
    lines = [json.loads(line) for line in r.get(out_key(job.id, 0)).splitlines()]
    assert [(i["index"], i["status"], i["error"]["code"]) for i in lines] == [
        (i, "failed", "poison_job") for i in range(3)
    ]
    assert r.hget(job_key(job.id), "status") == JobStatus.FAILED.value  # every item failed


def test_work_waiting_with_no_ticket_gets_one(settings, r, sweeper):
    create(settings, make_job())
    assert sweeper.sweep().tickets == 0  # its own ticket is still queued
    r.delete("cpu")  # gone with a dead worker's prefetch
    assert sweeper.sweep().tickets == 1
    headers = json.loads(r.lindex("cpu", 0))["headers"]
    assert headers["task"] == "mlqueue.drain" and headers["recovered"] is True


def test_a_batch_whose_chunks_were_never_queued_fails_after_the_bound(settings, r, sweeper):
    job = make_job(kind=JobKind.BATCH, progress=JobProgress(total=10), chunks=2, chunk_size=5)
    create(settings, job, members=[])
    assert sweeper.sweep().failed == []  # the API may still be writing them
    assert sweeper.sweep(now=time.time() + 31).failed == [job.id]
    record = r.hgetall(job_key(job.id))
    assert record["status"] == JobStatus.FAILED.value and json.loads(record["error"])["code"] == "enqueue_failed"
    assert r.zcard(queue_keys("cpu").pending) == 0


def test_one_sweeper_holds_the_lease_at_a_time(settings, r):
    a = Sweeper(make_celery(settings), r, settings, holder="a")
    b = Sweeper(make_celery(settings), r, settings, holder="b")
    assert a.take_lease() and not b.take_lease()
    assert a.take_lease()  # renewing its own
    a.stop()  # hands it over
    assert b.take_lease() and r.get(SWEEPER_LEASE) == "b"
