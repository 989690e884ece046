"""The scheduler: which waiting work a model queue runs next, fairly, by priority, nothing lost.

Work (a single job, or one chunk of a batch: a *member*, ``"{job id}"`` or ``"{job id}.{chunk}"``)
waits in a sorted set per model queue, ordered by a *tag*. Celery messages on the queue are only
tickets ("there is work on queue Q"): a worker that takes one claims the lowest tags itself, in one
Lua call that moves them from *ready* to *claimed* atomically. So there is no moment at which
claimed work is nowhere (kombu's Redis transport has one, between BRPOP and its unacked record),
and a lost or duplicated ticket changes nothing but who wakes up.

Scheduling rule (start-time fair queuing with priority steps, in rows of work):

- Each item has a start tag ``S = max(V, F[key, priority])``, and its key's finish moves on:
  ``F[key, priority] = S + rows / weight``. ``V`` is the start tag of the last item claimed. So a key's
  items run in the order it sent them, and keys with work waiting share the queue in proportion to
  their weights (``MLQUEUE_API_KEYS``), whatever their batch sizes: a key that sends 100,000 rows
  has its tags spread over 100,000 / weight rows of virtual time, and another key's single job
  slots in at ``V``, ahead of nearly all of them.
- Items are claimed in order of ``S + p * step``: ``p`` is 0 for high, 1 for normal, 2 for low,
  ``step`` is ``MLQUEUE_PRIORITY_STEP`` rows. A high item overtakes normal items until they are
  ``step`` rows of virtual time old and low items until they are ``2 * step`` old; after that, items
  sent later no longer pass them. Low work waits longer, never forever.

Keys, per model queue ``Q`` (``shared.redis_keys.queue_keys``):
    mlqueue:q:{Q}:ready       sorted set member -> tag: waiting to be claimed
    mlqueue:q:{Q}:waiting     sorted set member -> when it was enqueued (the oldest waiting's age)
    mlqueue:q:{Q}:meta        hash member -> JSON {o: fair-share key, c: priority, s: start, t: tag,
                              e: enqueued at, n: rows}; kept until the work is released
    mlqueue:q:{Q}:claimed     hash member -> "{runner}|{claimed at}": the worker incarnation running it
    mlqueue:q:{Q}:deliveries  hash member -> times claimed (dead letters past MLQUEUE_MAX_DELIVERIES)
    mlqueue:q:{Q}:keys        hash fair-share key -> items waiting (admission control)
    mlqueue:q:{Q}:clock       hash V -> virtual time; "F|{key}|{p}" -> that key's finish tag
    mlqueue:q:{Q}:drained     hash epoch second -> items claimed in it (the drain rate)
    mlqueue:q:{Q}:pending     sorted set batch id -> created at: a batch whose chunks are being written
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis
import redis.asyncio as aredis
from redis.commands.core import AsyncScript
from redis.typing import EncodableT

from shared.redis_keys import queue_keys


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 high, 1 normal, 2 low: the number of priority steps added to a tag."""
        return _RANKS[self]


_RANKS = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}

DRAIN_WINDOW_S = 10  # the drain rate is items claimed over this many recent seconds
CLAIM_MAX_ITEMS = 64  # single jobs one claim takes at most (a chunk is always claimed alone)


def chunk_member(job_id: str, chunk: int) -> str:
    return f"{job_id}.{chunk}"


@dataclass(frozen=True)
class MemberId:
    """What a line's member names: a single job, or one chunk of a batch job."""

    job_id: str
    chunk: int | None  # None for a single job


def parse_member(member: str) -> MemberId:
    job_id, _, chunk = member.partition(".")
    return MemberId(job_id, int(chunk) if chunk else None)


@dataclass(frozen=True)
class Work:
    """One item to enqueue: whose it is (its fair-share key), how urgent, how many rows."""

    member: str
    share_key: str
    priority: Priority = Priority.NORMAL
    rows: int = 1
    weight: float = 1.0


# KEYS: ready, waiting, meta, keys, clock, drained.
# ARGV: now, step, ttl, n, then per item: member, share key, priority rank, rows, weight.
# Returns {drain rate (string, items/s), rank of item 1, rank of item 2, ...}: a rank is how many
# items are ahead of it now.
ENQUEUE_LUA = """
local now, step, ttl, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local v = tonumber(redis.call('HGET', KEYS[5], 'V') or '0')
local out = {}
for i = 0, n - 1 do
  local b = 5 + i * 5
  local member, key, p = ARGV[b], ARGV[b + 1], tonumber(ARGV[b + 2])
  local rows, weight = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local fkey = 'F|' .. key .. '|' .. p
  local start = math.max(v, tonumber(redis.call('HGET', KEYS[5], fkey) or '0'))
  redis.call('HSET', KEYS[5], fkey, start + rows / weight)
  local tag = start + p * step
  redis.call('ZADD', KEYS[1], tag, member)
  redis.call('ZADD', KEYS[2], now, member)
  redis.call('HSET', KEYS[3], member, cjson.encode({o = key, c = p, s = start, t = tag, e = now, n = rows}))
  redis.call('HINCRBY', KEYS[4], key, 1)
  out[#out + 1] = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. tag)
end
local since, drained = math.floor(now) - __WINDOW__, 0
local flat = redis.call('HGETALL', KEYS[6])
for i = 1, #flat, 2 do
  if tonumber(flat[i]) > since then drained = drained + tonumber(flat[i + 1]) end
end
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ttl) end  -- kept while work arrives
table.insert(out, 1, tostring(drained / __WINDOW__))
return out
""".replace("__WINDOW__", str(DRAIN_WINDOW_S))

# KEYS: ready, waiting, meta, claimed, deliveries, keys, clock, drained, the queue's Celery list.
# ARGV: runner, now, max items, ttl, a ticket ("" for none), "1" if a chunk may be claimed.
# Claims the lowest tags: single jobs (up to max items, stopping at the first chunk) or one chunk;
# when no chunk may be claimed, the single jobs among the first max items, passing the chunks.
# When work is left in line and no ticket waits, queues the ticket: an idle worker wakes and helps,
# whoever holds the other tickets. Returns {member, times claimed, member, times claimed, ...}.
CLAIM_LUA = """
local items = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
if #items == 0 then return {} end
local v = tonumber(redis.call('HGET', KEYS[7], 'V') or '0')
local now = ARGV[2]
local chunks_ok = ARGV[6] == '1'
local out = {}
for _, member in ipairs(items) do
  local chunk = string.find(member, '.', 1, true) ~= nil
  if chunk and #out > 0 then break end
  if chunks_ok or not chunk then  -- (Redis runs Lua 5.1: no goto, no continue)
    redis.call('ZREM', KEYS[1], member)
    redis.call('ZREM', KEYS[2], member)
    local meta = redis.call('HGET', KEYS[3], member)
    if meta then
      local m = cjson.decode(meta)
      if m['s'] > v then v = m['s'] end
      if redis.call('HINCRBY', KEYS[6], m['o'], -1) <= 0 then redis.call('HDEL', KEYS[6], m['o']) end
    end
    redis.call('HSET', KEYS[4], member, ARGV[1] .. '|' .. now)
    out[#out + 1] = member
    out[#out + 1] = redis.call('HINCRBY', KEYS[5], member, 1)
    if chunk then break end
  end
end
if #out == 0 then return {} end
redis.call('HSET', KEYS[7], 'V', v)
for i = 4, 8 do redis.call('EXPIRE', KEYS[i], tonumber(ARGV[4])) end
if ARGV[5] ~= '' and redis.call('ZCARD', KEYS[1]) > 0 and redis.call('LLEN', KEYS[9]) == 0 then
  redis.call('LPUSH', KEYS[9], ARGV[5])
end
local sec = math.floor(tonumber(now))
redis.call('HINCRBY', KEYS[8], sec, #out / 2)
if redis.call('HLEN', KEYS[8]) > 3 * __WINDOW__ then
  for _, field in ipairs(redis.call('HKEYS', KEYS[8])) do
    if tonumber(field) <= sec - __WINDOW__ then redis.call('HDEL', KEYS[8], field) end
  end
end
return out
""".replace("__WINDOW__", str(DRAIN_WINDOW_S))

# KEYS: ready, waiting, meta, claimed, deliveries, keys.  ARGV: member, the claim it must still have
# ("" for any), max deliveries (0: no limit).
# Returns 1 requeued, 0 the claim changed meanwhile (nothing done), 2 delivered too often (claim
# dropped, not requeued: a dead letter), 3 no metadata (released already: nothing to run).
REQUEUE_LUA = """
local claim = redis.call('HGET', KEYS[4], ARGV[1])
if not claim or (ARGV[2] ~= '' and claim ~= ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[4], ARGV[1])
local meta = redis.call('HGET', KEYS[3], ARGV[1])
if not meta then return 3 end
local limit = tonumber(ARGV[3])
if limit > 0 and tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0') >= limit then return 2 end
local m = cjson.decode(meta)
redis.call('ZADD', KEYS[1], m['t'], ARGV[1])
redis.call('ZADD', KEYS[2], m['e'], ARGV[1])
redis.call('HINCRBY', KEYS[6], m['o'], 1)
return 1
"""

# KEYS: clock. Drops the finish tags at or behind V: a key's next start is V for them anyway.
PRUNE_LUA = """
local flat = redis.call('HGETALL', KEYS[1])
local v = tonumber(redis.call('HGET', KEYS[1], 'V') or '0')
local dropped = 0
for i = 1, #flat, 2 do
  if flat[i] ~= 'V' and tonumber(flat[i + 1]) <= v then
    redis.call('HDEL', KEYS[1], flat[i])
    dropped = dropped + 1
  end
end
return dropped
"""


def _enqueue_args(items: Sequence[Work], now: float, step: float, ttl_s: int) -> list[EncodableT]:
    args: list[EncodableT] = [repr(now), repr(step), ttl_s, len(items)]
    for item in items:
        args += [item.member, item.share_key, item.priority.rank, item.rows, repr(float(item.weight))]
    return args


@dataclass(frozen=True)
class Claim:
    member: str
    deliveries: int  # how many times it has been claimed, this time included
    claim: str = ""  # the claim as recorded ("{runner}|{at}"): giving it back checks it is still ours

    @property
    def job_id(self) -> str:
        return parse_member(self.member).job_id

    @property
    def chunk(self) -> int | None:
        return parse_member(self.member).chunk


@dataclass(frozen=True)
class QueueState:
    """What admission control, the job's queue position and the models page read of a queue."""

    backlog: int  # items waiting
    oldest_age_s: float  # of the oldest item waiting; 0 when none
    drain_rate: float  # items claimed per second, over the last DRAIN_WINDOW_S seconds
    per_key: dict[str, int]  # items waiting, by fair-share key


def drain_rate(drained: dict[str, str], now: float) -> float:
    since = int(now) - DRAIN_WINDOW_S
    return sum(int(count) for sec, count in drained.items() if int(sec) > since) / DRAIN_WINDOW_S


class Scheduler:
    """The worker's and the sweeper's side: claim work, release it, give it back."""

    def __init__(self, client: redis.Redis, ttl_s: int = 86_400) -> None:
        """``ttl_s``: the job TTL; the line's keys live as long while work keeps coming."""
        self.r = client
        self.ttl_s = ttl_s
        self._claim = client.register_script(CLAIM_LUA)
        self._requeue = client.register_script(REQUEUE_LUA)
        self._prune = client.register_script(PRUNE_LUA)

    def claim(
        self, queue: str, runner: str, max_items: int = CLAIM_MAX_ITEMS, ticket: str = "", chunks: bool = True
    ) -> list[Claim]:
        """Claim the work next in line for ``runner``; ``ticket`` is queued if work is left and
        no ticket waits; ``chunks=False`` claims single jobs only (see CLAIM_LUA)."""
        k = queue_keys(queue)
        keys = [k.ready, k.waiting, k.meta, k.claimed, k.deliveries, k.keys, k.clock, k.drained, queue]
        now = repr(time.time())
        flat = self._claim(keys=keys, args=[runner, now, max_items, self.ttl_s, ticket, "1" if chunks else "0"])
        return [Claim(flat[i], int(flat[i + 1]), f"{runner}|{now}") for i in range(0, len(flat), 2)]

    def release(self, queue: str, members: Sequence[str]) -> None:
        """The work is finished (or must never run): forget it."""
        if not members:
            return
        k = queue_keys(queue)
        with self.r.pipeline(transaction=True) as pipe:
            for key in (k.claimed, k.meta, k.deliveries):
                pipe.hdel(key, *members)
            pipe.execute()

    def requeue(self, queue: str, member: str, claim: str = "", max_deliveries: int = 0) -> int:
        """Put claimed work back where it was in line (see REQUEUE_LUA for the answers)."""
        k = queue_keys(queue)
        keys = [k.ready, k.waiting, k.meta, k.claimed, k.deliveries, k.keys]
        return int(self._requeue(keys=keys, args=[member, claim, max_deliveries]))

    def prune_clock(self, queue: str) -> int:
        return int(self._prune(keys=[queue_keys(queue).clock]))

    def meta(self, queue: str, member: str) -> dict[str, Any] | None:
        raw = self.r.hget(queue_keys(queue).meta, member)
        return json.loads(raw) if raw else None


async def enqueue(
    pipe: aredis.client.Pipeline,
    script: AsyncScript,
    queue: str,
    items: Sequence[Work],
    now: float,
    step: float,
    ttl_s: int,
) -> None:
    """Add ``items`` to ``queue``'s line in the caller's (asyncio) pipeline; its reply is the drain
    rate then each item's rank (``Ranked.from_reply``)."""
    k = queue_keys(queue)
    keys = [k.ready, k.waiting, k.meta, k.keys, k.clock, k.drained]
    await script(keys=keys, args=_enqueue_args(items, now, step, ttl_s), client=pipe)


@dataclass(frozen=True)
class Ranked:
    """What enqueueing says of the items just added."""

    ahead: list[int]
    drain_rate: float

    @classmethod
    def from_reply(cls, reply: list[Any]) -> Ranked:  # the script's reply: numbers, as redis-py returns them
        return cls([int(r) for r in reply[1:]], float(reply[0]))


def register_enqueue(client: aredis.Redis) -> AsyncScript:
    return client.register_script(ENQUEUE_LUA)


async def queue_state(client: aredis.Redis, queue: str, now: float | None = None) -> QueueState:
    """One round trip: backlog, oldest waiting, drain rate, items waiting per key."""
    now = time.time() if now is None else now
    k = queue_keys(queue)
    async with client.pipeline(transaction=False) as pipe:
        pipe.zcard(k.ready)
        pipe.zrange(k.waiting, 0, 0, withscores=True)
        pipe.hgetall(k.drained)
        pipe.hgetall(k.keys)
        backlog, oldest, drained, per_key = await pipe.execute()
    return QueueState(
        backlog=int(backlog),
        oldest_age_s=max(0.0, now - oldest[0][1]) if oldest else 0.0,
        drain_rate=drain_rate(drained, now),
        per_key={key: int(n) for key, n in per_key.items()},
    )


async def items_ahead(client: aredis.Redis, queue: str, member: str) -> int | None:
    """How many items are ahead of ``member`` now; None when it is not waiting (claimed, or gone)."""
    k = queue_keys(queue)
    score = await client.zscore(k.ready, member)
    if score is None:
        return None
    return int(await client.zcount(k.ready, "-inf", f"({score!r}"))
