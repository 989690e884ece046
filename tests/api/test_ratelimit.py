"""The rate limiter against a real Redis: checks that arrive together share one script call and
still count one by one."""

import asyncio

from api.ratelimit import Limit, RateLimiter
from shared.store import async_redis_client


def hits(settings, limit: str, identities: list[str]) -> list[bool]:
    async def scenario() -> list[bool]:
        client = async_redis_client(settings)
        try:
            limiter = RateLimiter(client, {"default": Limit.parse(limit)})
            verdicts = await asyncio.gather(*(limiter.hit("default", who) for who in identities))
            return [v.allowed for v in verdicts]
        finally:
            await client.aclose()

    return asyncio.run(scenario())


def test_concurrent_checks_of_one_client_are_counted_one_by_one(redis_settings):
    allowed = hits(redis_settings, "5/minute", ["alice"] * 12)
    assert allowed == [True] * 5 + [False] * 7  # in arrival order, though made in two script calls


def test_clients_checked_together_keep_their_own_budgets(redis_settings):
    allowed = hits(redis_settings, "2/minute", ["a", "b", "a", "b", "a", "c"])
    assert allowed == [True, True, True, True, False, True]


def test_more_checks_than_one_call_takes_are_all_answered(redis_settings):
    allowed = hits(redis_settings, "1000/minute", [f"k{i}" for i in range(300)])
    assert allowed == [True] * 300
