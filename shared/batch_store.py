"""Batch jobs in Redis: inputs and results stored per chunk, progress counted atomically.

    mlqueue:batch:{id}:in:{c}    JSON list: chunk c's inputs (deleted once the chunk is done)
    mlqueue:batch:{id}:out:{c}   NDJSON: chunk c's results, one per line, in input order (streamed
                                 back as stored: no parsing on the way out)
    mlqueue:batch:{id}:done      set of finished chunk indexes (a redelivered chunk counts once)
    mlqueue:batch:{id}:img:{i}   image i's pixels (image batches), deleted with its chunk
    mlqueue:batch:{id}:runners   hash: chunk -> the worker incarnation running it (for the sweeper)

Neither the API nor a worker ever holds more than the request body and one chunk of results.
A result item is ``{"index", "status": "succeeded"|"failed", "output" | "error"}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio as aredis

from shared import fastjson
from shared.store import EVENTS_CHANNEL, PREFIX, inflight_key, job_key, push_messages

if TYPE_CHECKING:  # only for types: this module must not pull Celery in
    from shared.celery_messages import Outbound

# KEYS: job, done set, out, in.  ARGV: chunk, results JSON, ok, failed, ttl, channel, now, predict_ms.
# Returns nil (job gone), {0, reason} (not counted), or {1, final (0|1), done, failed, status}.
CHUNK_DONE_LUA = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return nil end
if status ~= 'running' then return {0, status} end
local ttl = tonumber(ARGV[5])
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return {0, 'duplicate'} end
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('SET', KEYS[3], ARGV[2], 'EX', ttl)
redis.call('DEL', KEYS[4])
local done = redis.call('HINCRBY', KEYS[1], 'progress_done', tonumber(ARGV[3]) + tonumber(ARGV[4]))
local failed = redis.call('HINCRBY', KEYS[1], 'progress_failed', tonumber(ARGV[4]))
local predict_ms = redis.call('HINCRBYFLOAT', KEYS[1], 'predict_ms_sum', ARGV[8])
local total = tonumber(redis.call('HGET', KEYS[1], 'progress_total'))
local final = 0
if redis.call('SCARD', KEYS[2]) >= tonumber(redis.call('HGET', KEYS[1], 'chunks')) then
  final = 1
  local now = tonumber(ARGV[7])
  local metrics = cjson.decode(redis.call('HGET', KEYS[1], 'metrics'))
  metrics['total_ms'] = math.floor((now - tonumber(redis.call('HGET', KEYS[1], 'created_at'))) * 1000000) / 1000
  metrics['predict_ms'] = math.floor(tonumber(predict_ms) * 1000) / 1000
  status = (failed < total) and 'succeeded' or 'failed'
  redis.call('HSET', KEYS[1], 'status', status, 'completed_at', ARGV[7], 'metrics', cjson.encode(metrics),
             'output', cjson.encode({succeeded = done - failed, failed = failed}))
  if status == 'failed' then
    redis.call('HSET', KEYS[1], 'error', cjson.encode({code = 'all_items_failed', message = 'every item failed'}))
  end
end
redis.call('PUBLISH', ARGV[6], cjson.encode({id = string.match(KEYS[1], 'job:(.*)$'), status = status,
  progress = {total = total, done = done, failed = failed}}))
return {1, final, done, failed, status}
"""


def in_key(job_id: str, chunk: int) -> str:
    return f"{PREFIX}:batch:{job_id}:in:{chunk}"


def out_key(job_id: str, chunk: int) -> str:
    return f"{PREFIX}:batch:{job_id}:out:{chunk}"


def done_key(job_id: str) -> str:
    return f"{PREFIX}:batch:{job_id}:done"


def runners_key(job_id: str) -> str:
    return f"{PREFIX}:batch:{job_id}:runners"


def image_key(job_id: str, index: int) -> str:
    return f"{PREFIX}:batch:{job_id}:img:{index}"


def chunk_bounds(total: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk_size, total)) for start in range(0, total, chunk_size)]


class AsyncBatchStore:
    """The API's side: write the chunked inputs, read results back in order."""

    def __init__(self, client: aredis.Redis, binary: aredis.Redis, ttl_s: int) -> None:
        self.r = client
        self.binary = binary
        self.ttl_s = ttl_s

    async def write_inputs(
        self,
        job_id: str,
        chunks: Iterable[list[Any]],
        images: dict[int, bytes] | None = None,
        messages: Sequence[Outbound] = (),
    ) -> None:
        """Chunk inputs (and image pixels), flushed every few chunks to bound the pipeline buffer;
        then the chunk tasks' messages, so no worker looks for an input not yet written. The
        batch's own in-flight mark gives way to its chunks' in the same transaction."""
        if images:
            async with self.binary.pipeline(transaction=False) as pipe:
                for index, pixels in images.items():
                    pipe.set(image_key(job_id, index), pixels, ex=self.ttl_s)
                await pipe.execute()
        async with self.r.pipeline(transaction=False) as pipe:
            for c, rows in enumerate(chunks):
                pipe.set(in_key(job_id, c), fastjson.dumps(rows), ex=self.ttl_s)
                if c % 8 == 7:
                    await pipe.execute()
            await pipe.execute()
        async with self.r.pipeline(transaction=True) as pipe:
            push_messages(pipe, messages, self.ttl_s)
            for queue in {m.queue for m in messages}:
                pipe.zrem(inflight_key(queue), job_id)
            await pipe.execute()

    async def results(self, job_id: str, chunk_size: int, total: int, offset: int, limit: int) -> list[dict[str, Any]]:
        """Items ``offset .. offset+limit`` in input order; items of unfinished chunks are ``pending``."""
        end = min(total, offset + limit)
        if offset >= end:
            return []
        first, last = offset // chunk_size, (end - 1) // chunk_size
        raw = await self.r.mget([out_key(job_id, c) for c in range(first, last + 1)])
        lines: list[str] = []
        for c, value in zip(range(first, last + 1), raw, strict=True):
            lines.extend(value.split("\n") if value else _pending(c, chunk_size, total).splitlines())
        return [json.loads(line) for line in lines[offset - first * chunk_size : end - first * chunk_size]]

    async def stream(self, job_id: str, chunks: int, chunk_size: int, total: int) -> AsyncIterator[bytes]:
        """Every result as NDJSON, one chunk in memory at a time."""
        for c in range(chunks):
            value = await self.r.get(out_key(job_id, c))
            yield (value + "\n" if value else _pending(c, chunk_size, total)).encode()


def _pending(chunk: int, chunk_size: int, total: int) -> str:
    start = chunk * chunk_size
    return "".join(f'{{"index":{i},"status":"pending"}}\n' for i in range(start, min(start + chunk_size, total)))


class BatchStore:
    """The worker's side: read one chunk, record its results and progress."""

    def __init__(self, client: redis.Redis, binary: redis.Redis, ttl_s: int) -> None:
        self.r = client
        self.binary = binary
        self.ttl_s = ttl_s
        self._chunk_done = client.register_script(CHUNK_DONE_LUA)

    def is_done(self, job_id: str, chunk: int) -> bool:
        return bool(self.r.sismember(done_key(job_id), chunk))

    def read_inputs(self, job_id: str, chunk: int, runner: str) -> list[Any] | None:
        """The chunk's inputs, recording ``runner`` as the worker running it (for the sweeper)."""
        with self.binary.pipeline(transaction=False) as pipe:
            pipe.hset(runners_key(job_id), str(chunk), runner)
            pipe.expire(runners_key(job_id), self.ttl_s)
            pipe.get(in_key(job_id, chunk))  # bytes, as the parser takes them
            raw = pipe.execute()[-1]
        return None if raw is None else fastjson.loads(raw)

    def read_images(self, job_id: str, indexes: list[int]) -> list[bytes | None]:
        return self.binary.mget([image_key(job_id, i) for i in indexes]) if indexes else []

    def complete_chunk(
        self,
        job_id: str,
        chunk: int,
        lines: list[str],
        failed: int,
        predict_ms: float,
        image_indexes: Sequence[int] = (),
    ) -> tuple[bool, bool, str | None]:
        """Record a chunk's results, one NDJSON line per item in input order, ``failed`` of them
        failed. Returns (counted, job finished now, status after)."""
        res = self._chunk_done(
            keys=[job_key(job_id), done_key(job_id), out_key(job_id, chunk), in_key(job_id, chunk)],
            args=[
                chunk,
                "\n".join(lines),
                len(lines) - failed,
                failed,
                self.ttl_s,
                EVENTS_CHANNEL,
                repr(time.time()),
                repr(predict_ms),
            ],
        )
        if image_indexes:
            self.binary.delete(*[image_key(job_id, i) for i in image_indexes])
        if res is None:
            return False, False, None
        if not res[0]:
            return False, False, res[1]
        return True, bool(res[1]), res[4]
