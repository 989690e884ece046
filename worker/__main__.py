"""``python -m worker``: the one command that starts a worker (make run, compose and tests use it).

Extra arguments go to ``celery worker`` (e.g. ``-Q gpu`` or ``--hostname gpu0@%h``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from shared.logging import capture_native_stderr, setup_logging
from shared.settings import get_settings

if TYPE_CHECKING:
    from celery import Celery


def broker_transport(redis_url: str) -> str | None:
    """The transport class of ``worker.broker`` for this URL's scheme (None: kombu's own)."""
    scheme = redis_url.split("://", 1)[0].lower()
    return {"redis": "worker.broker:Transport", "sentinel": "worker.broker:SentinelTransport"}.get(scheme)


def use_own_transport(app: Celery, redis_url: str) -> None:
    """kombu's Redis (or Sentinel) transport, reusing its Redis client (see worker.broker). Only in
    the worker: Flower and the API keep the plain one, whose broker URL Flower's broker view reads."""
    transport = broker_transport(redis_url)
    if not transport:
        return
    app.conf.broker_transport = transport
    # On a lost connection kombu moves to the next URL of a ``sentinel://a;sentinel://b`` list and
    # builds that one's transport from its scheme: in this process, the scheme names ours too.
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES[redis_url.split("://", 1)[0].lower()] = transport


def main(argv: list[str]) -> None:
    settings = get_settings()
    from worker.context import cap_threads

    cap_threads(settings)  # before anything imports numpy
    if settings.log_format == "json":
        capture_native_stderr()  # TensorFlow's C++ logging, as JSON lines too
    setup_logging(settings.log_format, settings.log_level)  # before Celery's first words (and warnings)
    from worker.celery_app import app

    use_own_transport(app, settings.redis_url)
    args = [
        *(["--quiet"] if settings.log_format == "json" else []),  # the start-up banner is not JSON
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
