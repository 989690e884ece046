"""``python -m worker``: the one command that starts a worker (make run, compose and tests use it).

Extra arguments go to ``celery worker`` (e.g. ``-Q gpu`` or ``--hostname gpu0@%h``).
"""

from __future__ import annotations

import sys

from shared.settings import get_settings


def main(argv: list[str]) -> None:
    settings = get_settings()
    from worker.context import cap_threads

    cap_threads(settings)  # before anything imports numpy
    from worker.celery_app import app

    args = [
        "worker",
        "--pool=threads",
        f"--concurrency={settings.worker_concurrency}",
        f"--queues={settings.worker_queues}",
        f"--loglevel={settings.log_level}",
        "--without-mingle",
        "--without-gossip",
        *argv,
    ]
    app.worker_main(args)


if __name__ == "__main__":
    main(sys.argv[1:])
