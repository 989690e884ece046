"""The worker's Redis transport: one redis-py client per channel, and still a working broker."""

import pytest
import redis
from kombu import Connection, Queue

from shared.broker import Transport

pytestmark = pytest.mark.integration


def test_a_channel_reuses_its_client_and_remakes_it_with_a_new_pool(redis_server):
    with Connection(redis_server.url, transport=Transport) as conn:
        channel = conn.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        with channel.conn_or_acquire() as client:
            assert client is first
        channel._disconnect_pools()  # what kombu does after a fork or on close
        assert channel._create_client() is not first


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
