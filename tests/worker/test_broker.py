"""The worker's Redis transport: one redis-py client per channel, and still a working broker."""

import kombu.transport
import pytest
import redis
from kombu import Connection, Queue

from shared.celery_app import make_celery
from shared.redis_connection import broker_url
from shared.settings import Settings
from worker.__main__ import broker_transport, use_own_transport
from worker.broker import SentinelTransport, Transport


def test_python_m_worker_picks_this_transport_for_redis_and_sentinel_urls():
    assert broker_transport("redis://:pw@10.0.0.5:6380/3") == "worker.broker:Transport"
    assert broker_transport("sentinel://:pw@h1:26379,h2:26380/1?master=jobs") == "worker.broker:SentinelTransport"
    assert broker_transport("rediss://h:6380/0") is None  # kombu's own


def test_the_worker_keeps_its_transport_when_kombu_moves_to_the_next_sentinel(monkeypatch):
    monkeypatch.setattr(kombu.transport, "TRANSPORT_ALIASES", dict(kombu.transport.TRANSPORT_ALIASES))
    monkeypatch.setattr(kombu.transport, "_transport_cache", {})
    settings = Settings(redis_url="sentinel://127.0.0.1:1,127.0.0.1:2/0?master=jobs")
    app = make_celery(settings)
    use_own_transport(app, settings.redis_url)
    with Connection(broker_url(settings), transport=app.conf.broker_transport) as conn:
        conn.switch(conn.alt[1])  # what a failover does
        assert isinstance(conn.transport, SentinelTransport)


@pytest.mark.integration
def test_a_channel_reuses_its_client_and_remakes_it_with_a_new_pool(redis_server):
    with Connection(redis_server.url, transport=Transport) as conn:
        channel = conn.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        with channel.conn_or_acquire() as client:
            assert client is first
        channel._disconnect_pools()  # what kombu does after a fork or on close
        assert channel._create_client() is not first


@pytest.mark.integration
def test_messages_round_trip_with_acks(redis_server):
    queue = Queue("broker-test", routing_key="broker-test")
    with Connection(redis_server.url, transport=Transport) as conn:
        conn.default_channel.client.delete("broker-test")
        with conn.Producer() as producer:
            for i in range(3):
                producer.publish({"n": i}, routing_key="broker-test", declare=[queue], serializer="json")
        received = []
        with conn.Consumer(queue, callbacks=[lambda body, message: (received.append(body["n"]), message.ack())]):
            while len(received) < 3:
                conn.drain_events(timeout=5)
        assert received == [0, 1, 2]
        assert not conn.default_channel.client.hlen(conn.default_channel.unacked_key)


@pytest.mark.integration
def test_a_channel_whose_connection_is_gone_raises_a_connection_error_kombu_ignores(redis_server):
    """kombu#970: closing a channel after the broker dropped restores unacked messages through a
    pool built from a connection already torn down; an AttributeError there stopped the worker."""
    conn = Connection(redis_server.url, transport=Transport)
    channel = conn.default_channel
    channel._disconnect_pools()
    channel.connection.client = None  # what the teardown leaves
    with pytest.raises(redis.ConnectionError):
        channel._create_client()
    assert isinstance(redis.ConnectionError("x"), conn.connection_errors)  # ignored on close
