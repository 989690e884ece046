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

from shared.errors import TooManyRequests
from shared.store import PREFIX

if TYPE_CHECKING:
    from api.deps import ApiState

# KEYS[1]: the client's theoretical arrival time. ARGV: now ms, emission interval ms, burst.
# Returns {allowed, retry_after_ms, remaining, reset_ms}.
GCRA_LUA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = interval * tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, math.ceil(allow_at - now), 0, math.ceil(tat - now)}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
return {1, 0, math.floor((tolerance - (new_tat - now)) / interval), math.ceil(new_tat - now)}
"""

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


class RateLimiter:
    def __init__(self, client: aredis.Redis, limits: dict[str, Limit]) -> None:
        self.limits = limits
        self._script = client.register_script(GCRA_LUA)

    async def hit(self, kind: str, identity: str) -> tuple[bool, float, int, float, Limit]:
        limit = self.limits[kind]
        interval_ms = limit.period_s * 1000 / limit.count
        allowed, retry_ms, remaining, reset_ms = await self._script(
            keys=[f"{PREFIX}:rl:{kind}:{identity}"], args=[int(time.time() * 1000), interval_ms, limit.count]
        )
        return bool(allowed), retry_ms / 1000, int(remaining), reset_ms / 1000, limit


async def enforce(state: ApiState, identity: str, response: Response, *, batch: bool) -> None:
    """The default limit on every call, the batch limit too on batch submissions; RateLimit-*
    headers (IETF draft) on every answer, 429 with Retry-After past the limit."""
    for kind in ("default", "batch") if batch else ("default",):
        allowed, retry_s, remaining, reset_s, limit = await state.limiter.hit(kind, identity)
        headers = {
            "RateLimit-Limit": str(limit.count),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(math.ceil(reset_s)),
            "RateLimit-Policy": f"{limit.count};w={limit.period_s}",
        }
        if not allowed:
            headers["Retry-After"] = str(max(1, math.ceil(retry_s)))
            raise TooManyRequests(f"rate limit of {limit.count} per {limit.period_s}s exceeded", headers=headers)
        response.headers.update(headers)


async def enforce_auth_failures(state: ApiState, ip: str) -> None:
    """Called on each failed authentication, before its 401: past the per-IP budget the answer is
    429 instead. Only failures count, so a valid key is never slowed by its neighbours' mistakes;
    keys are 256 random bits, so a guesser learns nothing from the 401s it still gets."""
    allowed, retry_s, _, _, limit = await state.limiter.hit("auth_failure", f"ip:{ip}")
    if not allowed:
        raise TooManyRequests(
            f"too many failed authentications from this address (limit {limit.count} per {limit.period_s}s)",
            code="auth_rate_limited",
            headers={"Retry-After": str(max(1, math.ceil(retry_s)))},
        )
