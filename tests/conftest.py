"""Fixtures: a real Redis on a free port, a real Celery worker and the real API, as subprocesses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from devtools.processes import Stack, running_stack
from devtools.redis_server import RedisServer
from shared.settings import Settings


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis + one worker + the API, shared by the integration tests that do not break things."""
    with running_stack(tmp_path_factory.mktemp("stack")) as s:
        yield s


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack of its own, for a test that breaks things (stops Redis or the worker)."""
    with running_stack(tmp_path) as s:
        yield s


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
