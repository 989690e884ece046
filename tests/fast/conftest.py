"""The in-process tier: the real app (``create_app``) in this process, spoken to through httpx's
ASGI transport, against the real Redis fixture and with no worker.

With no worker, every job stays ``queued``: right for what the API decides alone (validation,
auth and scopes, rate limits, idempotency, error shapes, admission control and queue position,
the OpenAPI document). A job that runs, or a worker that dies, is a test for the subprocess stack.
Every test here is marked ``inprocess`` (and ``integration``, by its Redis fixture), so
``make test-fast`` selects this tier with ``-m "inprocess or not integration"``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.main import create_app
from devtools.redis_server import RedisServer
from shared.settings import Settings
from shared.store import EVENTS_CHANNEL

# What devtools.processes.make_stack gives the subprocess stack, for the same reasons: every
# client here is one address (the rate-limit tests set their own limits), and a resubmitted input
# must make a new job (the cache tests turn the cache on).
STACK_DEFAULTS: dict[str, Any] = {
    "heartbeat_interval_s": 1,
    "rate_limit": "1000000/minute",
    "batch_rate_limit": "1000000/minute",
    "cache_ttl_s": 0,
}

HERE = Path(__file__).parent

ApiFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/fast is of this tier (each module also says ``pytest.mark.anyio``,
    which anyio's plugin must see when it collects the module's functions)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.inprocess)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """asyncio only: the app runs on asyncio (uvicorn's loop) in production."""
    return "asyncio"


@asynccontextmanager
async def in_process_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run (Redis clients, event listener), as uvicorn would run it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await listener_subscribed(app)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30) as client:
            yield client


async def listener_subscribed(app: FastAPI) -> None:
    """Until the app's job-event listener has subscribed. Cancelled while it connects and
    subscribes, the listener can swallow the cancellation, and the lifespan's exit (uvicorn's
    shutdown too) then waits for it forever; the tests here open and close an app per test."""
    deadline = time.monotonic() + 10
    while (await app.state.mlqueue.redis.pubsub_numsub(EVENTS_CHANNEL))[0][1] < 1:
        if time.monotonic() > deadline:
            raise TimeoutError("the job-event listener did not subscribe in 10 s")
        await asyncio.sleep(0.005)


@pytest.fixture
def fast_settings(redis_server: RedisServer, redis_settings: Settings) -> Settings:
    """The stack's settings on the shared Redis fixture (flushed after each test by ``redis_settings``)."""
    return Settings(redis_url=redis_server.url, **STACK_DEFAULTS)


@pytest.fixture
def make_api(fast_settings: Settings) -> ApiFactory:
    """``async with make_api(api_keys=..., rate_limit="2/minute") as api:`` an app with these settings."""

    def make(**overrides: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        return in_process_api(Settings(**{**fast_settings.model_dump(), **overrides}))

    return make


@pytest.fixture
async def api(fast_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_api(fast_settings) as client:
        yield client
