"""``MLQUEUE_REDIS_URL`` forms: one Redis, or a Sentinel group (``shared.redis_connection``).

The clients' behaviour through a real failover is in ``tests/multihost/test_sentinel_failover.py``.
"""

import pytest
import redis
from pydantic import ValidationError

from shared.celery_app import make_celery
from shared.redis_connection import (
    SentinelTarget,
    async_redis_client,
    broker_transport_options,
    broker_url,
    endpoints,
    parse_sentinel_url,
    redis_client,
)
from shared.settings import Settings


def test_a_sentinel_url_names_its_sentinels_master_db_and_passwords():
    target = parse_sentinel_url("sentinel://:s3cret@h1:26380,h2,[fd00::1]:26381/2?master=jobs&sentinel_password=pw")
    assert target == SentinelTarget(
        sentinels=[("h1", 26380), ("h2", 26379), ("fd00::1", 26381)],
        master="jobs",
        db=2,
        password="s3cret",
        sentinel_password="pw",
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("sentinel://h1:26379/0", "needs \\?master=NAME"),
        ("sentinel://h1:26379/0?master=", "needs \\?master=NAME"),
        ("sentinel:///0?master=m", "at least one host:port"),
        ("sentinel://h1:port/0?master=m", "bad sentinel port"),
        ("sentinel://h1/zero?master=m", "must be a number"),
        ("sentinel://h1/0?master=m&mater=m", "unknown sentinel:// URL parameter"),
    ],
)
def test_a_malformed_sentinel_url_stops_the_start_up_with_its_reason(url, reason):
    with pytest.raises(ValidationError, match=reason):
        Settings(redis_url=url)


def test_a_plain_url_passes_through_untouched():
    settings = Settings(redis_url="redis://:pw@10.0.0.5:6380/3")
    assert broker_url(settings) == "redis://:pw@10.0.0.5:6380/3"
    assert broker_transport_options(settings) == {}
    assert endpoints(settings.redis_url) == [("10.0.0.5", 6380)]


def test_the_broker_gets_kombus_sentinel_form_and_the_master_name():
    settings = Settings(redis_url="sentinel://:pw@h1:26379,h2:26380/1?master=jobs&sentinel_password=sp")
    assert broker_url(settings) == "sentinel://:pw@h1:26379/1;sentinel://:pw@h2:26380/1"
    options = broker_transport_options(settings)
    assert options["master_name"] == "jobs" and options["sentinel_kwargs"]["password"] == "sp"
    conf = make_celery(settings).conf
    assert conf.broker_transport_options["master_name"] == "jobs"
    assert conf.broker_transport_options["visibility_timeout"] == settings.visibility_timeout_s


def test_clients_on_a_sentinel_url_ask_the_sentinels_for_the_master():
    settings = Settings(redis_url="sentinel://:pw@h1:26379/4?master=jobs")
    sync = redis_client(settings)
    pool = sync.connection_pool
    assert pool.service_name == "jobs" and pool.connection_kwargs["db"] == 4
    assert pool.connection_kwargs["password"] == "pw"
    assert sync.connection_pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs["host"] == "h1"
    client = async_redis_client(settings)
    assert client.connection_pool.service_name == "jobs"
    assert client.connection_pool.max_connections == settings.redis_max_connections  # still the blocking pool


@pytest.mark.slow  # waits out every sentinel's connect timeout
def test_with_no_sentinel_reachable_a_command_fails_as_a_connection_error():
    settings = Settings(redis_url="sentinel://127.0.0.1:1/0?master=jobs", redis_socket_timeout_s=0.5)
    with pytest.raises(redis.ConnectionError):  # the API's 503, the worker's retry
        redis_client(settings).ping()


def test_a_write_on_a_transport_the_server_just_closed_is_a_connection_error(monkeypatch):
    """uvloop says so with a RuntimeError, which the API would answer with a 500."""
    import asyncio

    import redis.asyncio as aredis

    async def closed(self, command, check_health=True):
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed")

    monkeypatch.setattr(aredis.Connection, "send_packed_command", closed)
    client = async_redis_client(Settings(redis_url="redis://127.0.0.1:1/0"))
    connection = client.connection_pool.make_connection()
    with pytest.raises(redis.ConnectionError, match="connection closed while sending"):
        asyncio.run(connection.send_packed_command(b"PING"))
