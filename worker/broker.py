"""kombu's Redis transport with one change: a channel reuses one redis-py client.

This overrides kombu's private ``Channel._create_client`` (kombu 5.x): no public hook selects how
a channel makes its client. It lives in ``worker/`` because only ``python -m worker`` uses it
(``worker.__main__.use_own_transport``); the API and Flower keep kombu's own transport. Its tests
(``tests/worker/test_broker.py``) call the private method, so a kombu that renames it fails them.
It can go when kombu reuses its client (the client-per-call cost below) and fixes kombu#970 /
kombu#582.

kombu builds a new ``redis.Redis`` object (over the same connection pool) for every ack, every
update of its unacked index and every task event it publishes. With redis-py 8, building one
copies its table of ~250 response callbacks into a new case-insensitive dict: 10 % of a worker's
CPU under load here (py-spy, iris jobs at concurrency 64). A client is a thread-safe facade over
its pool, so one per channel serves every caller; it is made again if kombu replaces the pool.
``python -m worker`` selects these transports for ``redis://`` and ``sentinel://`` brokers.

A second change works around kombu#970 / kombu#582: when the broker connection drops while a
message is unacknowledged, the consumer closes its channel, and closing restores the unacked
messages through a new pool built from the connection's parameters, which are already gone: an
``AttributeError`` there is "unrecoverable" and stops the worker. Here that is a ``ConnectionError``,
which kombu ignores on close; the message goes back after the visibility timeout instead (a
ticket: the sweeper has sent another long before). If the channel still has its client, that one
restores them: its pool reconnects (to the new master, via Sentinel).
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _sync_client: redis.Redis | None = None

    # kombu's own _create_client is unannotated, and a super() call escapes mypy's
    # untyped_calls_exclude (pyproject): hence the two ignores below.
    def _create_client(self, asynchronous: bool = False) -> Any:  # a redis.Redis (kombu: untyped)
        if asynchronous:  # the consumer's own BRPOP client: made once per channel already
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        client = self._sync_client
        if self._pool is None and getattr(self.connection, "client", None) is None:
            if client is not None:  # kombu#970 (see above): restore through the client it had
                return client
            raise redis.ConnectionError("the broker connection is closed")
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()  # type: ignore[no-untyped-call]
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """The same reuse on kombu's Sentinel channel, whose pool follows the master after a failover."""


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel
