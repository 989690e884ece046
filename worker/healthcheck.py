"""``python -m worker.healthcheck``: exit 0 while a worker on this host publishes its presence, else 1.

The worker image's ``HEALTHCHECK``. A worker refreshes ``mlqueue:worker:{hostname}`` every
heartbeat (``shared.presence``), from ``worker_ready`` on, i.e. once its models are loaded; the
key expires three heartbeats after the worker stops. Celery's node name is ``celery@<host>``
unless ``--hostname`` says otherwise (``gpu0@%h`` …), so by default any presence whose name is
this host's name, or ends with ``@`` + it, counts; ``--hostname NAME`` asks for that node exactly.

It reads the ``mlqueue:workers`` index and the few keys it names (never a keyspace scan), imports
no TensorFlow or Celery, and gives up after ``--timeout`` seconds on an unreachable Redis.
"""

from __future__ import annotations

import argparse
import socket
import sys

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.presence import WorkerPresence, parse_all
from shared.redis_connection import redis_client, texts
from shared.redis_keys import WORKERS, worker_key
from shared.settings import Settings, get_settings


def is_local(name: str, hostnames: list[str] | None = None) -> bool:
    """Whether the Celery node ``name`` is the one asked for, or (by default) runs on this host."""
    if hostnames:
        return name in hostnames
    host = socket.gethostname()
    return name == host or name.endswith(f"@{host}")


def local_workers(
    settings: Settings, hostnames: list[str] | None = None, timeout_s: float = 2.0
) -> list[WorkerPresence]:
    """The live presence records of this host's workers (raises ``redis.RedisError`` if Redis fails)."""
    timeout_s = min(timeout_s, settings.redis_socket_timeout_s)
    client = redis_client(settings.model_copy(update={"redis_socket_timeout_s": timeout_s}))
    client.set_retry(Retry(NoBackoff(), 0))  # one try: the container runtime calls again soon
    try:
        names = [n for n in texts(client.zrange(WORKERS, 0, -1)) if is_local(n, hostnames)]
        values = client.mget([worker_key(n) for n in names]) if names else []
    finally:
        client.close()
    return parse_all(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--hostname", action="append", help="the Celery node name to look for (default: any on this host)"
    )
    parser.add_argument("--timeout", type=float, default=2.0, help="Redis connect/read timeout in seconds")
    args = parser.parse_args(argv)
    try:
        workers = local_workers(get_settings(), args.hostname, args.timeout)
    except (redis.RedisError, OSError) as exc:
        sys.stderr.write(f"unhealthy: redis: {exc}\n")
        return 1
    if not workers:
        wanted = ", ".join(args.hostname) if args.hostname else f"*@{socket.gethostname()}"
        sys.stderr.write(f"unhealthy: no live worker presence for {wanted}\n")
        return 1
    sys.stdout.write("healthy: " + ", ".join(f"{w.hostname} {list(w.queues)}" for w in workers) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
