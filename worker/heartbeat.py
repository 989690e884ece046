"""Publishes this worker's presence (see ``shared.presence``) until it stops."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from shared.presence import WorkerPresence, parse_models, presence_ttl
from shared.redis_connection import endpoints
from shared.redis_keys import WORKERS, worker_key
from shared.settings import Settings

log = logging.getLogger(__name__)


def advertised_address(settings: Settings) -> str:
    """``advertise_address``, else the local address of the route to Redis (a UDP "connect" only
    picks the route; nothing is sent): the address the other machines know this one by."""
    if settings.advertise_address:
        return settings.advertise_address
    host, port = endpoints(settings.redis_url)[0]
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, port))
            address: str = s.getsockname()[0]  # typeshed: Any (the address's shape depends on the family)
            return address
    except OSError:  # a name that does not resolve yet, no route: the host name still says where
        return ""


class Heartbeat:
    def __init__(
        self,
        client: redis.Redis,
        hostname: str,
        queues: list[str],
        interval_s: float,
        models: Callable[[], dict[str, Any]],
        incarnation: str = "",
        address: str = "",
    ) -> None:
        self.client = client
        self.incarnation = incarnation
        self.host = socket.gethostname()
        self.address = address
        self.hostname = hostname
        self.queues = queues
        self.interval_s = interval_s
        self.models = models
        self.started_at = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        ttl = presence_ttl(self.interval_s)
        now = time.time()
        presence = WorkerPresence(
            hostname=self.hostname,
            host=self.host,
            address=self.address,
            pid=os.getpid(),
            incarnation=self.incarnation,
            queues=tuple(self.queues),
            models=parse_models(self.models()),
            started_at=self.started_at,
            heartbeat_at=now,
        )
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(worker_key(self.hostname), json.dumps(presence.to_json()), ex=ttl)
            pipe.zadd(WORKERS, {self.hostname: now})
            pipe.zremrangebyscore(WORKERS, "-inf", now - 10 * ttl)
            pipe.expire(WORKERS, 10 * ttl)
            pipe.execute()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except redis.RedisError as exc:  # Redis restarting: keep trying, it comes back
                log.warning("worker.heartbeat_failed error=%s", exc)

    def stop(self) -> None:
        """Leave at once, so readiness drops now rather than when the key expires."""
        self._stop.set()
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(worker_key(self.hostname))
                pipe.zrem(WORKERS, self.hostname)
                pipe.execute()
        except redis.RedisError:
            pass
