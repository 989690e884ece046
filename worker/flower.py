"""``python -m worker.flower``: Flower on the worker's Celery app, with bounded memory.

``MLQUEUE_FLOWER_BASIC_AUTH=user:password`` puts it behind basic auth. Flower 2.2 checks that
auth only on handlers marked ``@tornado.web.authenticated``, and its Prometheus ``/metrics`` is
not (it names every task, worker and queue): ``protect_metrics`` marks it. ``/healthcheck``
stays open on purpose: it answers only "OK", and the container's health probe has no password.
"""

from __future__ import annotations

from shared.settings import get_settings


def main() -> None:
    settings = get_settings()
    from worker.celery_app import app

    args = [
        "flower",
        f"--port={settings.flower_port}",
        f"--address={settings.flower_bind}",
        "--persistent=False",
        "--max_tasks=10000",
        "--purge_offline_workers=60",
    ]
    if settings.flower_basic_auth:
        args.append(f"--basic-auth={settings.flower_basic_auth}")
        protect_metrics()
    app.start(args)


def protect_metrics() -> None:
    """Put Flower's ``/metrics`` behind the same authentication as its UI and API."""
    import tornado.web
    from flower.views.monitor import Metrics

    if not getattr(Metrics.get, "_mlqueue_protected", False):
        Metrics.get = tornado.web.authenticated(Metrics.get)
        Metrics.get._mlqueue_protected = True


if __name__ == "__main__":
    main()
