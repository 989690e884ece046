"""The job store against a real Redis."""

import asyncio
import json
import time

import pytest
import redis

from shared.errors import Conflict, Gone, NotFound
from shared.jobs import Job, JobStatus, new_job_id
from shared.redis_keys import EVENTS_CHANNEL, INDEX_ALL, job_key, tomb_key
from shared.store import (
    AsyncJobStore,
    JobStore,
    async_redis_client,
    decode_reads,
    encode_fields,
    job_fields,
    redis_client,
)


def make_job(model: str = "iris", **kw) -> Job:
    return Job(id=new_job_id(), model=model, version=1, queue="cpu", created_at=time.time(), **kw)


def run(coro):
    return asyncio.run(coro)


def test_both_stores_decode_reads_the_same_way_records_inputs_and_missing_jobs():
    job = make_job()
    raw = {**encode_fields(job_fields(job)), "input": "[1, 2]"}
    delivery = json.dumps(
        {"webhook_id": "msg_1", "event": "job.completed", "attempt": 1, "at": "2026-01-01T00:00:00", "status_code": 200}
    )
    replies = [raw, [delivery], {}, []]  # queue_reads: a record and its deliveries, per job
    found, missing = decode_reads(replies, with_input=True)
    assert found.job is not None and found.job.id == job.id and found.stored_input == [1, 2]
    assert [d.status_code for d in found.job.deliveries] == [200]
    assert missing.job is None and missing.stored_input is None
    [listed] = decode_reads([raw], deliveries=False)  # a listing reads no delivery logs, nor inputs
    assert listed.job == job and listed.stored_input is None


async def with_store(settings, fn):
    client = async_redis_client(settings)
    try:
        return await fn(AsyncJobStore(client, settings))
    finally:
        await client.aclose()


def test_create_writes_record_indexes_and_tombstone_all_with_ttls(redis_settings):
    job = make_job()
    run(with_store(redis_settings, lambda s: s.create(job, [1, 2, 3, 4])))
    r = redis.Redis.from_url(redis_settings.redis_url)
    for key in (job_key(job.id), tomb_key(job.id), INDEX_ALL):
        assert r.ttl(key) > 0, key
    assert r.ttl(tomb_key(job.id)) > r.ttl(job_key(job.id))
    assert JobStore(redis_client(redis_settings)).get_with_input(job.id).stored_input == [1, 2, 3, 4]


def test_expired_job_is_gone_not_unknown(redis_settings):
    settings = redis_settings.model_copy(update={"job_ttl_s": 1})
    job = make_job()

    async def scenario(store: AsyncJobStore):
        await store.create(job, [1])
        assert (await store.get(job.id)).status == JobStatus.QUEUED
        await asyncio.sleep(1.5)
        with pytest.raises(Gone):
            await store.get(job.id)
        with pytest.raises(NotFound):
            await store.get(new_job_id())

    run(with_store(settings, scenario))


def test_cancel_and_finish_cannot_both_win(redis_settings):
    job = make_job()
    worker_store = JobStore(redis_client(redis_settings))

    async def scenario(store: AsyncJobStore):
        await store.create(job, [1])
        assert worker_store.transition(job.id, (JobStatus.QUEUED,), {"status": JobStatus.RUNNING})
        canceled = await store.cancel(job.id)
        assert canceled.status == JobStatus.CANCELED
        # the worker's late result is refused, and the job stays canceled
        assert not worker_store.transition(
            job.id, (JobStatus.RUNNING,), {"status": JobStatus.SUCCEEDED, "output": {"label": "x"}}
        )
        assert (await store.get(job.id)).output is None
        with pytest.raises(Conflict, match="is canceled"):
            await store.cancel(job.id)

    run(with_store(redis_settings, scenario))


def test_transitions_publish_events(redis_settings):
    job = make_job()
    sub = redis.Redis.from_url(redis_settings.redis_url, decode_responses=True).pubsub()
    sub.subscribe(EVENTS_CHANNEL)
    sub.get_message(timeout=1)

    async def scenario(store: AsyncJobStore):
        await store.create(job, [1])
        await store.cancel(job.id)

    run(with_store(redis_settings, scenario))
    message = sub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert message and '"status": "canceled"' in message["data"] and job.id in message["data"]


def test_idempotency_key_replays_or_conflicts(redis_settings):
    async def scenario(store: AsyncJobStore):
        first = await store.create(make_job(request_hash="h1"), [1], "key-1")
        replay = await store.create(make_job(request_hash="h1"), [1], "key-1")
        assert first.created and not replay.created and replay.job.id == first.job.id
        with pytest.raises(Conflict, match="different request"):
            await store.create(make_job(request_hash="h2"), [2], "key-1")

    run(with_store(redis_settings, scenario))


def test_list_is_newest_first_filtered_and_paged(redis_settings):
    async def scenario(store: AsyncJobStore):
        created = []
        for i in range(7):
            job = make_job(model="iris" if i % 2 == 0 else "wine")
            await store.create(job, [i])
            created.append(job)
            await asyncio.sleep(0.002)
        await store.cancel(created[0].id)
        newest_first = [j.id for j in reversed(created)]

        page1 = await store.list(status=None, model=None, limit=4, cursor=None)
        page2 = await store.list(status=None, model=None, limit=4, cursor=page1.next_cursor)
        assert [j.id for j in page1.jobs + page2.jobs] == newest_first and page2.next_cursor is None

        iris = await store.list(status=None, model="iris", limit=10, cursor=None)
        assert [j.id for j in iris.jobs] == [j.id for j in reversed(created) if j.model == "iris"]
        canceled = await store.list(status=JobStatus.CANCELED, model=None, limit=10, cursor=None)
        assert [j.id for j in canceled.jobs] == [created[0].id]

    run(with_store(redis_settings, scenario))
