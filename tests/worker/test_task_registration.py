"""A renamed task would strand every message already queued under the old name: fail loudly."""

import redis

from worker.celery_app import app


def test_registered_task_names():
    app.loader.import_default_modules()
    names = {n for n in app.tasks if not n.startswith("celery.")}
    assert names == {
        "mlqueue.drain",
        "mlqueue.predict",
        "mlqueue.predict_many",
        "mlqueue.predict_chunk",
        "mlqueue.deliver_webhook",
    }


def test_tasks_are_late_acked_and_requeued_when_the_worker_dies():
    app.loader.import_default_modules()
    for name in (
        "mlqueue.drain",
        "mlqueue.predict",
        "mlqueue.predict_many",
        "mlqueue.predict_chunk",
        "mlqueue.deliver_webhook",
    ):
        task = app.tasks[name]
        assert task.acks_late and task.reject_on_worker_lost, name
    assert app.conf.task_serializer == "json" and app.conf.accept_content == ["json"]


def test_tasks_retry_redis_blips_only_and_store_no_result():
    app.loader.import_default_modules()
    for name, retries in (("mlqueue.drain", 10), ("mlqueue.predict_chunk", 10), ("mlqueue.deliver_webhook", 5)):
        task = app.tasks[name]
        assert set(task.autoretry_for) == {redis.ConnectionError, redis.TimeoutError}, name
        assert task.max_retries == retries and task.ignore_result, name
