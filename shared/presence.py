"""Worker presence in Redis: who is alive, which queues it consumes, which models it has loaded.

Each worker refreshes ``mlqueue:worker:{hostname}`` (TTL 3 heartbeats) and its score in the
``mlqueue:workers`` sorted set. The API reads them for /readyz, routing and ``GET /v1/models``;
a worker that dies simply stops refreshing and drops out.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aredis

from shared.redis_keys import WORKERS, worker_key


def presence_ttl(interval_s: float) -> int:
    return max(2, int(interval_s * 3))


async def live_workers(client: aredis.Redis, interval_s: float) -> list[dict[str, Any]]:
    ttl = presence_ttl(interval_s)
    hosts = await client.zrangebyscore(WORKERS, time.time() - ttl, "+inf")
    if not hosts:
        return []
    values = await client.mget([worker_key(h) for h in hosts])
    return [json.loads(v) for v in values if v]
