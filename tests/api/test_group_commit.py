"""Group commit against a real Redis: jobs submitted together share one transaction and one message."""

import asyncio
import json
import time

import pytest
import redis

from api.group_commit import GroupCommit
from shared.celery_app import make_celery
from shared.celery_messages import JOBS
from shared.jobs import Job, new_job_id
from shared.store import AsyncJobStore, NewJob, async_redis_client, inflight_key, job_key


def make_job(queue: str = "cpu") -> Job:
    return Job(id=new_job_id(), model="iris", version=1, queue=queue, created_at=time.time())


async def submit_all(settings, jobs: list[Job]) -> GroupCommit:
    client = async_redis_client(settings)
    try:
        groups = GroupCommit(AsyncJobStore(client, settings), make_celery(settings, publisher=True), max_group=16)
        await asyncio.gather(*(groups.create(NewJob(job, [5.1, 3.5, 1.4, 0.2])) for job in jobs))
        return groups
    finally:
        await client.aclose()


def messages(r: redis.Redis, queue: str = "cpu") -> list[list[str]]:
    """The job ids of each message in the queue, oldest first."""
    return [json.loads(m)["headers"][JOBS] for m in reversed(r.lrange(queue, 0, -1))]


def test_jobs_arriving_together_share_messages_and_every_one_is_stored(redis_settings):
    jobs = [make_job() for _ in range(40)]
    asyncio.run(submit_all(redis_settings, jobs))
    r = redis.Redis.from_url(redis_settings.redis_url, decode_responses=True)
    groups = messages(r)
    assert sorted(i for g in groups for i in g) == sorted(j.id for j in jobs)  # each job in exactly one message
    assert len(groups) < len(jobs) and max(len(g) for g in groups) <= 16
    assert len(groups[0]) == 1  # the first found nothing in flight: written at once, alone
    for job in jobs:
        assert r.hget(job_key(job.id), "status") == "queued"
    assert r.zcard(inflight_key("cpu")) == len(jobs)  # the sweeper knows every one


def test_a_lone_submission_is_written_at_once_alone(redis_settings):
    async def scenario():
        client = async_redis_client(redis_settings)
        try:
            groups = GroupCommit(AsyncJobStore(client, redis_settings), make_celery(redis_settings, publisher=True))
            for _ in range(3):  # one after another, as an idle API sees them
                started = time.perf_counter()
                await groups.create(NewJob(make_job(), [5.1, 3.5, 1.4, 0.2]))
                assert time.perf_counter() - started < 1.0
        finally:
            await client.aclose()

    asyncio.run(scenario())
    r = redis.Redis.from_url(redis_settings.redis_url, decode_responses=True)
    assert [len(g) for g in messages(r)] == [1, 1, 1]


def test_jobs_for_different_queues_never_share_a_message(redis_settings):
    jobs = [make_job("cpu" if i % 2 else "gpu") for i in range(10)]
    asyncio.run(submit_all(redis_settings, jobs))
    r = redis.Redis.from_url(redis_settings.redis_url, decode_responses=True)
    for queue in ("cpu", "gpu"):
        ids = {i for g in messages(r, queue) for i in g}
        assert ids == {j.id for j in jobs if j.queue == queue}


def test_a_failed_transaction_fails_every_request_of_its_group_and_none_hangs(redis_settings):
    broken = redis_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0", "redis_socket_timeout_s": 0.5})
    with pytest.raises(redis.RedisError):
        asyncio.run(asyncio.wait_for(submit_all(broken, [make_job() for _ in range(5)]), 10))
