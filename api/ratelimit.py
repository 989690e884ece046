"""Rate limits in Redis: GCRA (the generic cell rate algorithm) in one Lua script, so it is atomic
across API processes and needs one key per client. redis-py reloads the script by itself if a
restarted Redis answers NOSCRIPT."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis.asyncio as aredis
from fastapi import Response

from api.coalesce import Coalescer
from shared.errors import ErrorCode, TooManyRequests
from shared.redis_keys import rate_limit_key

if TYPE_CHECKING:
    from api.deps import ApiState

# Many checks in one call (requests that arrived together, see ``api.coalesce``), in order, so two
# for the same client see each other. KEYS[i]: client i's theoretical arrival time. ARGV[1]: now
# ms; ARGV[2i], ARGV[2i+1]: its emission interval ms and burst. Returns, per key, {allowed,
# retry_after_ms, remaining, reset_ms}, flattened.
GCRA_LUA = """
local now = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = interval * tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - tolerance
  if now < allow_at then
    for _, v in ipairs({0, math.ceil(allow_at - now), 0, math.ceil(tat - now)}) do out[#out + 1] = v end
  else
    redis.call('SET', key, new_tat, 'PX', math.ceil(new_tat - now) + 1000)
    for _, v in ipairs({1, 0, math.floor((tolerance - (new_tat - now)) / interval), math.ceil(new_tat - now)}) do
      out[#out + 1] = v
    end
  end
end
return out
"""
MAX_CHECKS = 128  # per script call

_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)\s*$")


@dataclass(frozen=True)
class Limit:
    count: int
    period_s: int

    @classmethod
    def parse(cls, text: str) -> Limit:
        match = _LIMIT.match(text)
        if not match or int(match.group(1)) < 1:
            raise ValueError(f"bad rate limit {text!r}: expected e.g. 600/minute")
        return cls(int(match.group(1)), _PERIODS[match.group(2)])


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_s: float
    remaining: int
    reset_s: float
    limit: Limit


class RateLimiter:
    """Checks of requests that arrive together share one script call (``api.coalesce``)."""

    def __init__(self, client: aredis.Redis, limits: dict[str, Limit]) -> None:
        self.limits = limits
        self._script = client.register_script(GCRA_LUA)
        self._checks: Coalescer[tuple[str, str], Verdict] = Coalescer(self._check_many, MAX_CHECKS)

    async def hit(self, kind: str, identity: str) -> Verdict:
        return await self._checks.call((kind, identity))

    async def _check_many(self, checks: list[tuple[str, str]]) -> list[Verdict]:
        limits = [self.limits[kind] for kind, _ in checks]
        args: list[float] = [int(time.time() * 1000)]
        for limit in limits:
            args += [limit.period_s * 1000 / limit.count, limit.count]
        keys = [rate_limit_key(kind, identity) for kind, identity in checks]
        flat = await self._script(keys=keys, args=args)
        return [
            Verdict(bool(flat[i]), flat[i + 1] / 1000, int(flat[i + 2]), flat[i + 3] / 1000, limit)
            for i, limit in zip(range(0, len(flat), 4), limits, strict=True)
        ]


async def enforce(state: ApiState, identity: str, response: Response, *, batch: bool) -> None:
    """The default limit on every call, the batch limit too on batch submissions; RateLimit-*
    headers (IETF draft) on every answer, 429 with Retry-After past the limit."""
    for kind in ("default", "batch") if batch else ("default",):
        verdict = await state.limiter.hit(kind, identity)
        limit = verdict.limit
        headers = {
            "RateLimit-Limit": str(limit.count),
            "RateLimit-Remaining": str(verdict.remaining),
            "RateLimit-Reset": str(math.ceil(verdict.reset_s)),
            "RateLimit-Policy": f"{limit.count};w={limit.period_s}",
        }
        if not verdict.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(verdict.retry_s)))
            raise TooManyRequests(f"rate limit of {limit.count} per {limit.period_s}s exceeded", headers=headers)
        response.headers.update(headers)


async def enforce_auth_failures(state: ApiState, ip: str) -> None:
    """Called on each failed authentication, before its 401: past the per-IP budget the answer is
    429 instead. Only failures count, so a valid key is never slowed by its neighbours' mistakes;
    keys are 256 random bits, so a guesser learns nothing from the 401s it still gets."""
    verdict = await state.limiter.hit("auth_failure", f"ip:{ip}")
    if not verdict.allowed:
        limit = verdict.limit
        raise TooManyRequests(
            f"too many failed authentications from this address (limit {limit.count} per {limit.period_s}s)",
            code=ErrorCode.AUTH_RATE_LIMITED,
            headers={"Retry-After": str(max(1, math.ceil(verdict.retry_s)))},
        )
