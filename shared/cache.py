"""The result cache: identical (model, version, input) answered from Redis without a worker.

The key is computed once, by the API, from the *normalized* input (the feature vector in
manifest order, so a named and a positional request share an entry; or the resized pixels of an
image), and stored on the job; the worker fills it after a success. Hits and misses are counted
per model in ``mlqueue:cache:stats``.
"""

from __future__ import annotations

import hashlib
import json

import redis
import redis.asyncio as aredis

from shared.fastjson import JsonValue
from shared.redis_connection import text
from shared.redis_keys import CACHE_STATS, cache_entry

STATS_TTL_S = 7 * 86400  # refreshed on every lookup: counters of a model nobody asks for age out


def cache_key(model: str, version: int, normalized: JsonValue | bytes) -> str:
    if isinstance(normalized, bytes):
        digest = hashlib.sha256(normalized).hexdigest()
    else:
        digest = hashlib.sha256(json.dumps(normalized, separators=(",", ":")).encode()).hexdigest()
    return cache_entry(model, version, digest)


async def lookup(client: aredis.Redis, key: str, model: str) -> JsonValue | None:
    """The cached output, or None; counts the hit or miss."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.get(key)
        pipe.hincrby(CACHE_STATS, f"{model}:lookups", 1)
        pipe.expire(CACHE_STATS, STATS_TTL_S)
        value, _, _ = await pipe.execute()
    if value is None:
        return None
    await client.hincrby(CACHE_STATS, f"{model}:hits", 1)
    return json.loads(value)


def store(client: redis.Redis | redis.client.Pipeline, key: str, output: JsonValue, ttl_s: int) -> None:
    client.set(key, json.dumps(output), ex=ttl_s)


async def stats(client: aredis.Redis) -> dict[str, dict[str, int]]:
    """{model: {"hits": n, "lookups": n}}."""
    out: dict[str, dict[str, int]] = {}
    for field, value in (await client.hgetall(CACHE_STATS)).items():
        model, _, kind = text(field).rpartition(":")
        out.setdefault(model, {"hits": 0, "lookups": 0})[kind] = int(value)
    return out
