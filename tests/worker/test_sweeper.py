"""The sweeper against a real Redis: each state a job's message can be in after a crash.

The states are made the way crashes leave them (a message popped and never recorded, a message
held in kombu's ``unacked`` hash by a process that is gone); the end-to-end SIGKILL test is in
``tests/test_worker_kills.py``.
"""

import asyncio
import json
import time

import pytest
import redis
from kombu.transport.redis import Channel

from shared.batch_store import runners_key
from shared.celery_app import make_celery
from shared.celery_messages import JOBS, SENT_AT, chunk_message, jobs_message
from shared.jobs import Job, JobKind, JobProgress, JobStatus, new_job_id
from shared.presence import worker_key
from shared.store import AsyncJobStore, async_redis_client, inflight_key, job_key, redis_client
from worker.sweeper import LEASE_KEY, Sweeper


def make_job(**kw) -> Job:
    return Job(**{"id": new_job_id(), "model": "iris", "version": 1, "queue": "cpu", "created_at": time.time(), **kw})


def create(settings, job: Job, chunks=(None,)) -> None:
    async def scenario():
        client = async_redis_client(settings)
        try:
            app = make_celery(settings, publisher=True)
            messages = [
                jobs_message(app, job.queue, [job.id], job.created_at)
                if c is None
                else chunk_message(app, job.queue, job.id, c, job.created_at)
                for c in chunks
            ]
            await AsyncJobStore(client, settings).create(job, [5.1, 3.5, 1.4, 0.2], messages=messages)
        finally:
            await client.aclose()

    asyncio.run(scenario())


@pytest.fixture
def r(redis_settings) -> redis.Redis:
    return redis_client(redis_settings)


@pytest.fixture
def sweeper(redis_settings, r) -> Sweeper:
    settings = redis_settings.model_copy(update={"recover_after_s": 30.0})
    return Sweeper(make_celery(settings), r, settings, holder="test")


def hold(r: redis.Redis, queue: str, since: float | None = None) -> str:
    """What kombu does on delivery: pop the message, then record it as unacked."""
    raw = r.rpop(queue)
    tag = json.loads(raw)["properties"]["delivery_tag"]
    r.hset(Channel.unacked_key, tag, json.dumps([json.loads(raw), "", queue]))
    r.zadd(Channel.unacked_index_key, {tag: since or time.time()})
    return tag


def mark_running(r: redis.Redis, job: Job, runner: str) -> None:
    r.hset(job_key(job.id), mapping={"status": "running", "runner": json.dumps(runner)})


def beat(r: redis.Redis, hostname: str, incarnation: str) -> None:
    r.set(worker_key(hostname), json.dumps({"hostname": hostname, "incarnation": incarnation}), ex=30)


def queued_task_ids(r: redis.Redis, queue: str = "cpu") -> list[str]:
    return [json.loads(m)["headers"]["id"] for m in r.lrange(queue, 0, -1)]


def test_every_job_of_a_group_message_is_seen_as_held(redis_settings, r, sweeper):
    jobs = [make_job() for _ in range(3)]
    for job in jobs:
        create(redis_settings, job)  # the store writes them one by one here; the group is the message
    r.delete("cpu")
    group = jobs_message(make_celery(redis_settings), "cpu", [j.id for j in jobs], time.time())
    r.lpush("cpu", group.body)
    hold(r, "cpu")
    assert set(sweeper.held_messages()) == {j.id for j in jobs}
    for _ in range(2):
        assert sweeper.sweep().resent == {}  # held and young: nothing is lost


def test_a_message_lost_between_pop_and_unacked_is_sent_again_on_the_second_pass(redis_settings, r, sweeper):
    job = make_job()
    create(redis_settings, job)
    r.rpop("cpu")  # the consumer popped it and was killed before recording it
    assert sweeper.sweep().resent == {}  # once could be the instant between those two commands
    assert sweeper.sweep().resent == {job.id: "message_lost"}
    (message,) = r.lrange("cpu", 0, -1)
    headers = json.loads(message)["headers"]
    assert headers[JOBS] == [job.id] and headers["task"] == "mlqueue.predict_many"
    assert headers[SENT_AT] == pytest.approx(job.created_at)  # keeps its place in the send order
    assert sweeper.sweep().resent == {}  # waiting in the queue again: left alone


def test_jobs_waiting_in_the_queue_are_never_sent_twice(redis_settings, r, sweeper):
    jobs = [make_job(created_at=time.time() - 3600) for _ in range(3)]  # old, but still queued
    for job in jobs:
        create(redis_settings, job)
    for _ in range(3):
        assert sweeper.sweep().resent == {}
    assert sorted(queued_task_ids(r)) == sorted(j.id for j in jobs)


def test_taken_but_not_yet_recorded_is_only_a_suspect_while_older_work_waits(redis_settings, r, sweeper):
    first, second = make_job(created_at=time.time() - 2), make_job()
    create(redis_settings, first)
    create(redis_settings, second)
    hold(r, "cpu")  # the older one is held by a consumer; the newer still waits
    for _ in range(2):
        assert sweeper.sweep().resent == {}
    assert queued_task_ids(r) == [second.id]


def test_a_running_job_of_a_dead_worker_is_sent_again_at_once_and_its_unacked_entry_dropped(redis_settings, r, sweeper):
    job = make_job()
    create(redis_settings, job)
    tag = hold(r, "cpu")
    mark_running(r, job, "w1@host#deadbeef")
    beat(r, "w1@host", "0ther")  # restarted under the same hostname: another incarnation
    assert sweeper.sweep().resent == {job.id: "runner_died"}
    assert queued_task_ids(r) == [job.id]
    assert not r.hexists(Channel.unacked_key, tag) and r.zscore(Channel.unacked_index_key, tag) is None


def test_a_job_running_on_a_live_worker_is_left_alone(redis_settings, r, sweeper):
    job = make_job()
    create(redis_settings, job)
    tag = hold(r, "cpu", since=time.time() - 3600)  # long-running, but its worker beats
    mark_running(r, job, "w1@host#abc")
    beat(r, "w1@host", "abc")
    for _ in range(2):
        assert sweeper.sweep().resent == {}
    assert r.hexists(Channel.unacked_key, tag) and r.llen("cpu") == 0


def test_a_run_a_live_worker_gave_up_without_a_word_is_sent_again_past_the_time_limit(redis_settings, r, sweeper):
    """A Redis failover cut the worker off mid-run: its retry could not be sent, nor its record
    updated. The record says running on a live worker, and no message is left anywhere."""
    job = make_job()
    create(redis_settings, job)
    tag = hold(r, "cpu")
    r.hdel(Channel.unacked_key, tag)  # rejected: the message is gone
    mark_running(r, job, "w1@host#abc")
    beat(r, "w1@host", "abc")
    limit = redis_settings.task_time_limit_s + sweeper.settings.recover_after_s
    r.hset(job_key(job.id), "started_at", json.dumps(time.time() - limit + 5))
    for _ in range(2):
        assert sweeper.sweep().resent == {}  # within any run's limit: it may still be running
    r.hset(job_key(job.id), "started_at", json.dumps(time.time() - limit - 1))
    assert sweeper.sweep().resent == {job.id: "run_abandoned"}
    assert queued_task_ids(r) == [job.id]


def test_a_message_reserved_too_long_without_starting_is_sent_again(redis_settings, r, sweeper):
    job = make_job()
    create(redis_settings, job)
    tag = hold(r, "cpu", since=time.time() - 5)
    assert sweeper.sweep().resent == {}  # reserved 5 s: its consumer is busy, not dead
    r.zadd(Channel.unacked_index_key, {tag: time.time() - 31})
    assert sweeper.sweep().resent == {job.id: "reserved_too_long"}
    assert queued_task_ids(r) == [job.id] and not r.hexists(Channel.unacked_key, tag)


def test_finished_and_expired_work_is_forgotten(redis_settings, r, sweeper):
    done, gone = make_job(), make_job()
    for job in (done, gone):
        create(redis_settings, job)
        hold(r, "cpu")
    r.hset(job_key(done.id), "status", "succeeded")
    r.delete(job_key(gone.id))
    report = sweeper.sweep()
    assert report.resent == {} and report.forgotten == 2
    assert r.zcard(inflight_key("cpu")) == 0


def test_a_chunk_is_judged_by_its_own_runner_and_done_set(redis_settings, r, sweeper):
    job = make_job(kind=JobKind.BATCH, progress=JobProgress(total=10), chunks=2, chunk_size=5)
    create(redis_settings, job, chunks=(0, 1))
    r.hset(job_key(job.id), "status", "running")
    hold(r, "cpu")  # chunk 0: running on a worker that died
    hold(r, "cpu")  # chunk 1: finished
    r.hset(runners_key(job.id), mapping={"0": "w1@host#gone", "1": "w2@host#alive"})
    beat(r, "w2@host", "alive")
    r.sadd(f"mlqueue:batch:{job.id}:done", 1)
    report = sweeper.sweep()
    assert report.resent == {f"{job.id}.0": "runner_died"}
    assert queued_task_ids(r) == [f"{job.id}.0"]
    assert r.zrange(inflight_key("cpu"), 0, -1) == [f"{job.id}.0"]


def test_a_batch_whose_chunks_were_never_sent_fails_after_the_bound(redis_settings, r, sweeper):
    job = make_job(kind=JobKind.BATCH, progress=JobProgress(total=10), chunks=2, chunk_size=5)
    create(redis_settings, job, chunks=())  # the API died before writing the chunks' messages
    assert sweeper.sweep().failed == []
    report = sweeper.sweep(now=time.time() + 31)
    assert report.failed == [job.id]
    record = r.hgetall(job_key(job.id))
    assert record["status"] == JobStatus.FAILED.value and json.loads(record["error"])["code"] == "enqueue_failed"


def test_one_sweeper_holds_the_lease_at_a_time(redis_settings, r):
    a = Sweeper(make_celery(redis_settings), r, redis_settings, holder="a")
    b = Sweeper(make_celery(redis_settings), r, redis_settings, holder="b")
    assert a.take_lease() and not b.take_lease()
    assert a.take_lease()  # renewing its own
    a.stop()  # hands it over
    assert b.take_lease() and r.get(LEASE_KEY) == "b"


def test_one_pass_pages_through_more_entries_than_one_read_returns(redis_settings, r, sweeper, monkeypatch):
    monkeypatch.setattr("worker.sweeper.SCAN_LIMIT", 4)  # pages of 4: the same paging as 2,000
    running, finished = make_job(), [make_job() for _ in range(9)]
    for job in [running, *finished]:
        create(redis_settings, job)
        hold(r, "cpu")
    mark_running(r, running, "w1@host#abc")
    beat(r, "w1@host", "abc")
    for job in finished:
        r.hset(job_key(job.id), "status", "succeeded")
    report = sweeper.sweep()
    assert report.forgotten == 9 and report.resent == {}  # under load, cleanup keeps up in one pass
    assert r.zrange(inflight_key("cpu"), 0, -1) == [running.id]
