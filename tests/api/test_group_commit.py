"""Group commit against a real Redis: jobs submitted together share one transaction and one ticket."""

import asyncio
import json
import time

import pytest
import redis

from api.group_commit import GroupCommit
from shared.celery_app import make_celery
from shared.jobs import Job, QueueInfo, new_job_id
from shared.queues import TaskName
from shared.redis_keys import job_key, queue_keys
from shared.scheduler import Work
from shared.store import AsyncJobStore, NewJob, async_redis_client


def make_job(queue: str = "cpu") -> Job:
    return Job(id=new_job_id(), model="iris", version=1, queue=queue, created_at=time.time())


def create(groups: GroupCommit, job: Job):
    return groups.create(NewJob(job, [5.1, 3.5, 1.4, 0.2]), Work(job.id, "key:test"))


async def submit_all(settings, jobs: list[Job]) -> list[QueueInfo]:
    client = async_redis_client(settings)
    try:
        groups = GroupCommit(AsyncJobStore(client, settings), make_celery(settings, publisher=True), max_group=16)
        return await asyncio.gather(*(create(groups, job) for job in jobs))
    finally:
        await client.aclose()


def tickets(r: redis.Redis, queue: str = "cpu") -> list[dict]:
    """The ticket messages in the queue, oldest first."""
    return [json.loads(m)["headers"] for m in reversed(r.lrange(queue, 0, -1))]


def test_jobs_arriving_together_share_tickets_and_every_one_is_stored_in_line(redis_settings):
    jobs = [make_job() for _ in range(40)]
    places = asyncio.run(submit_all(redis_settings, jobs))
    r = redis.Redis.from_url(redis_settings.redis_url, decode_responses=True)
    sent = tickets(r)
    assert 1 < len(sent) < len(jobs)  # the first alone, the rest gathered into groups of at most 16
    assert {t["task"] for t in sent} == {TaskName.DRAIN.value}
    assert r.zcard(queue_keys("cpu").ready) == len(jobs)  # every job waits in line
    assert sorted(p.position for p in places) == list(range(1, len(jobs) + 1))  # each its own place
    for job in jobs:
        assert r.hget(job_key(job.id), "status") == "queued"


def test_a_lone_submission_is_written_at_once_alone(redis_settings):
    async def scenario():
        client = async_redis_client(redis_settings)
        try:
            groups = GroupCommit(AsyncJobStore(client, redis_settings), make_celery(redis_settings, publisher=True))
            places = []
            for _ in range(3):  # one after another, as an idle API sees them
                started = time.perf_counter()
                places.append(await create(groups, make_job()))
                assert time.perf_counter() - started < 1.0
            return places
        finally:
            await client.aclose()

    places = asyncio.run(scenario())
    r = redis.Redis.from_url(redis_settings.redis_url, decode_responses=True)
    assert len(tickets(r)) == 3
    assert [p.position for p in places] == [1, 2, 3]


def test_jobs_for_different_queues_wait_in_their_own_lines(redis_settings):
    jobs = [make_job("cpu" if i % 2 else "gpu") for i in range(10)]
    asyncio.run(submit_all(redis_settings, jobs))
    r = redis.Redis.from_url(redis_settings.redis_url, decode_responses=True)
    for queue in ("cpu", "gpu"):
        assert set(r.zrange(queue_keys(queue).ready, 0, -1)) == {j.id for j in jobs if j.queue == queue}
        assert tickets(r, queue)


def test_a_failed_transaction_fails_every_request_of_its_group_and_none_hangs(redis_settings):
    broken = redis_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0", "redis_socket_timeout_s": 0.5})
    with pytest.raises(redis.RedisError):
        asyncio.run(asyncio.wait_for(submit_all(broken, [make_job() for _ in range(5)]), 10))
