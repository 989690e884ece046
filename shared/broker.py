"""kombu's Redis transport with one change: a channel reuses one redis-py client.

kombu builds a new ``redis.Redis`` object (over the same connection pool) for every ack, every
update of its unacked index and every task event it publishes. With redis-py 8, building one
copies its table of ~250 response callbacks into a new case-insensitive dict: 10 % of a worker's
CPU under load here (py-spy, iris jobs at concurrency 64). A client is a thread-safe facade over
its pool, so one per channel serves every caller; it is made again if kombu replaces the pool.
``python -m worker`` selects these transports for ``redis://`` and ``sentinel://`` brokers.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer's own BRPOP client: made once per channel already
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is not None and self._pool is None and getattr(self.connection, "client", None) is None:
            # kombu closing a channel whose connection it has closed already (the broker was lost
            # mid-ack, e.g. a failover): the pool cannot be rebuilt without the connection's URL, and
            # the attempt (AttributeError) kills the worker. Restoring the unacked messages at close
            # uses the client the channel had; its pool reconnects (to the new master, via Sentinel).
            return client
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """The same reuse on kombu's Sentinel channel, whose pool follows the master after a failover."""


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel
