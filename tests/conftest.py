"""Fixtures: a real Redis on a free port, a real Celery worker and the real API, as subprocesses.

Any test that asks for one of the servers below is marked ``integration`` here, by its fixtures,
so ``pytest -m "not integration"`` runs only what needs no server at all (the pure unit tier).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from devtools.processes import Stack, running_stack
from devtools.redis_server import RedisServer
from devtools.s3_server import S3Server
from shared.model_store import ModelStore
from shared.settings import Settings

# Fixtures that start a server (Redis, the subprocess stack, moto's S3): a test using any of them,
# directly or through another fixture, is an integration test.
SERVER_FIXTURES = frozenset({"redis_server", "stack", "own_stack", "s3_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """An S3-compatible server on loopback (moto, over HTTP); the AWS_* variables point at it."""
    server = S3Server(log_path=tmp_path_factory.mktemp("s3") / "moto.log").start()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.env.items():
            patch.setenv(name, value)
        yield server
    server.stop()


@pytest.fixture
def s3_url(s3_server: S3Server) -> str:
    """A fresh bucket for one test, as a model repository URL (``s3://<bucket>/models``)."""
    bucket = f"mlqueue-{uuid.uuid4().hex[:12]}"
    ModelStore(f"s3://{bucket}", s3_server.endpoint_url).fs.mkdir(bucket)
    return f"s3://{bucket}/models"
