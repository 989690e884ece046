"""Batch jobs in Redis: inputs and results stored per chunk, progress counted atomically.

    mlqueue:batch:{id}:in:{c}    JSON list: chunk c's inputs (deleted once the chunk is done, unless
                                 some of its items failed: ``POST /v1/jobs/{id}/retry`` re-runs those)
    mlqueue:batch:{id}:out:{c}   NDJSON: chunk c's results, one per line, in input order (streamed
                                 back as stored: no parsing on the way out)
    mlqueue:batch:{id}:done      set of finished chunk indexes (a redelivered chunk counts once)
    mlqueue:batch:{id}:img:{i}   image i's pixels (image batches), deleted with its chunk's inputs

Neither the API nor a worker ever holds more than the request body and one chunk of results.
A result item is ``{"index", "status": "succeeded"|"failed", "output" | "error"}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aredis

from shared import fastjson
from shared.errors import ErrorCode
from shared.fastjson import JsonValue
from shared.redis_connection import binary_or_none, text, text_or_none
from shared.redis_keys import EVENTS_CHANNEL, done_key, image_key, in_key, job_key, out_key, queue_keys
from shared.scheduler import Ranked, register_enqueue
from shared.store import Enqueue, push_work

# KEYS: job, done set, out, in.  ARGV: chunk, results JSON, ok, failed, ttl, channel, now, predict_ms,
# the error code of a batch whose every item failed.
# Returns nil (job gone), {0, reason} (not counted), or {1, final (0|1), done, failed, status}.
CHUNK_DONE_LUA = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return nil end
if status ~= 'running' then return {0, status} end
local ttl = tonumber(ARGV[5])
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return {0, 'duplicate'} end
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('SET', KEYS[3], ARGV[2], 'EX', ttl)
if tonumber(ARGV[4]) == 0 then redis.call('DEL', KEYS[4]) end  -- failed rows' inputs stay, for a retry
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
    redis.call('HSET', KEYS[1], 'error', cjson.encode({code = ARGV[9], message = 'every item failed'}))
  end
end
redis.call('PUBLISH', ARGV[6], cjson.encode({id = string.match(KEYS[1], 'job:(.*)$'), status = status,
  progress = {total = total, done = done, failed = failed}}))
return {1, final, done, failed, status}
"""


@dataclass(frozen=True)
class BatchItems:
    """A batch's items ready to store: rows in input order (an image row is ``{"image": i}``) and
    the decoded pixels of image ``i``."""

    rows: list[JsonValue]
    images: dict[int, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkRecorded:
    """What recording a chunk did: whether it counted (a redelivered or canceled chunk does not),
    whether it finished the batch, and the batch's status after it (None when the job is gone)."""

    counted: bool
    final: bool
    status: str | None


def chunk_bounds(total: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk_size, total)) for start in range(0, total, chunk_size)]


class AsyncBatchStore:
    """The API's side: write the chunked inputs, read results back in order."""

    def __init__(self, client: aredis.Redis, binary: aredis.Redis, ttl_s: int, priority_step: float) -> None:
        self.r = client
        self.binary = binary
        self.ttl_s = ttl_s
        self.priority_step = priority_step
        self._enqueue = register_enqueue(client)

    async def write_inputs(
        self, job_id: str, chunks: Iterable[list[JsonValue]], images: dict[int, bytes] | None, work: Enqueue
    ) -> Ranked:
        """Chunk inputs (and image pixels), flushed every few chunks to bound the pipeline buffer;
        then the chunks are queued, so no worker looks for an input not yet written. The batch's
        pending mark goes in the same transaction."""
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
            at = await push_work(pipe, self._enqueue, work, time.time(), self.priority_step, self.ttl_s)
            pipe.zrem(queue_keys(work.queue).pending, job_id)
            replies = await pipe.execute()
        return Ranked.from_reply(replies[at])

    async def results(self, job_id: str, chunk_size: int, total: int, offset: int, limit: int) -> list[dict[str, Any]]:
        """Items ``offset .. offset+limit`` in input order; items of unfinished chunks are ``pending``."""
        end = min(total, offset + limit)
        if offset >= end:
            return []
        first, last = offset // chunk_size, (end - 1) // chunk_size
        raw = await self.r.mget([out_key(job_id, c) for c in range(first, last + 1)])
        lines: list[str] = []
        for c, value in zip(range(first, last + 1), raw, strict=True):
            lines.extend(text(value).split("\n") if value else _pending(c, chunk_size, total).splitlines())
        return [json.loads(line) for line in lines[offset - first * chunk_size : end - first * chunk_size]]

    async def unfinished_items(self, job_id: str, chunks: int, chunk_size: int) -> BatchItems | None:
        """The inputs of every item that did not succeed (failed, or never ran), in index order,
        with their images renumbered from 0; None when some were no longer stored (expired)."""
        rows: list[JsonValue] = []
        images: dict[int, bytes] = {}
        for c in range(chunks):
            done = text_or_none(await self.r.get(out_key(job_id, c)))
            raw = binary_or_none(await self.binary.get(in_key(job_id, c)))
            results = [json.loads(line) for line in done.split("\n")] if done else None
            wanted = [i for i, item in enumerate(results) if item["status"] != "succeeded"] if results else None
            if wanted == []:
                continue
            if raw is None:
                return None
            chunk_rows = fastjson.loads(raw)
            for i in wanted if wanted is not None else range(len(chunk_rows)):
                row = chunk_rows[i]
                if isinstance(row, dict) and set(row) == {"image"}:
                    pixels = binary_or_none(await self.binary.get(image_key(job_id, c * chunk_size + i)))
                    if pixels is None:
                        return None
                    images[len(rows)] = pixels
                    row = {"image": len(rows)}
                rows.append(row)
        return BatchItems(rows, images)

    async def stream(self, job_id: str, chunks: int, chunk_size: int, total: int) -> AsyncIterator[bytes]:
        """Every result as NDJSON, one chunk in memory at a time."""
        for c in range(chunks):
            value = text_or_none(await self.r.get(out_key(job_id, c)))
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
        return bool(self.r.sismember(done_key(job_id), str(chunk)))

    def read_inputs(self, job_id: str, chunk: int) -> list[JsonValue] | None:
        """The chunk's inputs (None once the chunk is done)."""
        raw = binary_or_none(self.binary.get(in_key(job_id, chunk)))  # bytes, as the parser takes them
        return None if raw is None else fastjson.loads(raw)

    def read_images(self, job_id: str, indexes: list[int]) -> list[bytes | None]:
        replies = self.binary.mget([image_key(job_id, i) for i in indexes]) if indexes else []
        return [binary_or_none(pixels) for pixels in replies]

    def complete_chunk(
        self,
        job_id: str,
        chunk: int,
        lines: list[str],
        failed: int,
        predict_ms: float,
        image_indexes: Sequence[int] = (),
    ) -> ChunkRecorded:
        """Record a chunk's results, one NDJSON line per item in input order, ``failed`` of them
        failed."""
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
                ErrorCode.ALL_ITEMS_FAILED,
            ],
        )
        if image_indexes and not failed:
            self.binary.delete(*[image_key(job_id, i) for i in image_indexes])
        if res is None:
            return ChunkRecorded(counted=False, final=False, status=None)
        if not res[0]:
            return ChunkRecorded(counted=False, final=False, status=res[1])
        return ChunkRecorded(counted=True, final=bool(res[1]), status=res[4])
