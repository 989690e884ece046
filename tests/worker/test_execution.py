"""run_job against a real Redis store, with the model runtime replaced where a failure is needed."""

import asyncio
import time

from shared.jobs import Job, JobStatus, new_job_id
from shared.manifests import ModelRepository
from shared.settings import REPO_ROOT
from shared.store import AsyncJobStore, async_redis_client
from worker.context import WorkerContext, connect
from worker.execution import run_job
from worker.runtime import ModelRuntime


def create(settings, job_input) -> str:
    job = Job(id=new_job_id(), model="iris", version=1, queue="cpu", created_at=time.time())

    async def go():
        client = async_redis_client(settings)
        await AsyncJobStore(client, settings).create(job, job_input)
        await client.aclose()

    asyncio.run(go())
    return job.id


def context(settings, runtime=None) -> WorkerContext:
    if runtime is None:
        runtime = ModelRuntime(ModelRepository(REPO_ROOT / "models"))
        runtime.load_all()
    return connect(settings, runtime)


def test_succeeds_with_metrics(redis_settings):
    ctx = context(redis_settings)
    job_id = create(redis_settings, [5.1, 3.5, 1.4, 0.2])
    assert run_job(job_id, ctx) == JobStatus.SUCCEEDED
    job = ctx.store.get(job_id)
    assert job.output["label"] == "setosa"
    assert job.started_at >= job.created_at and job.completed_at >= job.started_at
    assert job.metrics.queue_ms >= 0 and job.metrics.predict_ms >= 0 and job.metrics.total_ms >= job.metrics.queue_ms


def test_a_second_delivery_of_a_finished_job_does_nothing(redis_settings):
    ctx = context(redis_settings)
    job_id = create(redis_settings, [5.1, 3.5, 1.4, 0.2])
    run_job(job_id, ctx)
    first = ctx.store.get(job_id)
    assert run_job(job_id, ctx) is None  # did not run again
    assert ctx.store.get(job_id) == first


def test_invalid_input_becomes_a_failed_job(redis_settings):
    ctx = context(redis_settings)
    job_id = create(redis_settings, [1, 2])  # a stale API could let this through
    assert run_job(job_id, ctx) == JobStatus.FAILED
    assert ctx.store.get(job_id).error.code == "invalid_input"


class ExplodingRuntime:
    def predict_many(self, name, version, raw_inputs):
        raise RuntimeError("CUDA out of memory")


def test_model_crash_becomes_a_failed_job_with_code(redis_settings):
    ctx = context(redis_settings, runtime=ExplodingRuntime())
    job_id = create(redis_settings, [1, 2, 3, 4])
    assert run_job(job_id, ctx) == JobStatus.FAILED
    error = ctx.store.get(job_id).error
    assert error.code == "model_error" and "CUDA out of memory" in error.message


def test_missing_job_is_skipped(redis_settings):
    assert run_job(new_job_id(), context(redis_settings, runtime=ExplodingRuntime())) is None
