"""``python -m worker.flower``: Flower on the worker's Celery app, with bounded memory.

``MLQUEUE_FLOWER_BASIC_AUTH=user:password`` puts it behind basic auth.
"""

from __future__ import annotations

from shared.settings import get_settings


def main() -> None:
    settings = get_settings()
    from worker.celery_app import app

    args = [
        "flower",
        f"--port={settings.flower_port}",
        f"--address={settings.api_host}",
        "--persistent=False",
        "--max_tasks=10000",
        "--purge_offline_workers=60",
    ]
    if settings.flower_basic_auth:
        args.append(f"--basic-auth={settings.flower_basic_auth}")
    app.start(args)


if __name__ == "__main__":
    main()
