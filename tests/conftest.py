"""Fixtures: a real Redis on a free port, a real Celery worker and the real API, as subprocesses."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from devtools.processes import Stack, make_stack
from devtools.redis_server import RedisServer
from shared.settings import Settings


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis + one worker + the API, shared by the integration tests that do not break things."""
    s = make_stack(tmp_path_factory.mktemp("stack"))
    try:
        s.start_worker()
        s.start_api()
        s.wait_ready()
        yield s
    finally:
        s.stop_all()


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A bare Redis for store-level tests."""
    server = RedisServer(data_dir=tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_settings(redis_server: RedisServer) -> Iterator[Settings]:
    settings = Settings(redis_url=redis_server.url)
    yield settings
    redis.Redis.from_url(redis_server.url).flushdb()
