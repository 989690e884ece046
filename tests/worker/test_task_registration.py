"""A renamed task would strand every message already queued under the old name: fail loudly."""

from worker.celery_app import app


def test_registered_task_names():
    app.loader.import_default_modules()
    names = {n for n in app.tasks if not n.startswith("celery.")}
    assert names == {"mlqueue.predict"}


def test_tasks_are_late_acked_and_requeued_when_the_worker_dies():
    app.loader.import_default_modules()
    task = app.tasks["mlqueue.predict"]
    assert task.acks_late and task.reject_on_worker_lost
    assert app.conf.task_serializer == "json" and app.conf.accept_content == ["json"]
