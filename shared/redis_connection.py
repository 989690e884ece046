"""Every connection to Redis is built here, from ``MLQUEUE_REDIS_URL``: one server or a Sentinel group.

Two forms of the URL:

    redis://[[user]:password@]host:port[/db]        one Redis (``rediss://`` for TLS)
    sentinel://[[user]:password@]host:port[,host:port...][/db]?master=NAME[&sentinel_password=PW]

A ``sentinel://`` URL lists the Sentinels (port 26379 when left out) and names the monitored
master; ``user:password`` authenticate to the master and its replicas, ``sentinel_password`` to
the Sentinels (when they have ``requirepass``). Every client asks the Sentinels where the master
is when it connects, and again after an error, so a failover needs no restart: commands fail
(``redis.ConnectionError``, which the API answers with 503) until a replica is promoted, then
go to it. A demoted primary's ``READONLY`` answer is turned into a connection error by redis-py's
Sentinel-managed connections, for the same effect.

The job store, the API's clients, the rate limiter, the worker's heartbeat and sweeper, the
healthcheck and the Celery broker (kombu's ``sentinel`` transport) all take their connection here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import redis
import redis.asyncio as aredis
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.backoff
import redis.retry
import redis.sentinel

from shared.settings import Settings

SENTINEL_SCHEME = "sentinel"
SENTINEL_PORT = 26379

# One retry, at once, on a connection error: after Redis restarts, every pooled connection is dead
# and would otherwise fail its next command (a 503 each). A connection error means the command
# never reached a live server, so resending it is safe. Timeouts are not retried: a command that
# timed out may have run (a GCRA hit, a status transition), and a retry would double the 503 bound.
_RETRIED_ERRORS = (redis.ConnectionError,)


@dataclass(frozen=True)
class SentinelTarget:
    """A parsed ``sentinel://`` URL."""

    sentinels: list[tuple[str, int]]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0].lower() == SENTINEL_SCHEME


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Parse ``sentinel://[[user]:password@]h1:p1[,h2:p2...][/db]?master=NAME``; ValueError if malformed."""
    parts = urlsplit(url)
    if parts.scheme.lower() != SENTINEL_SCHEME:
        raise ValueError(f"not a sentinel:// URL: {url!r}")
    auth, _, hosts = parts.netloc.rpartition("@")
    username = password = None
    if auth:
        user, _, pw = auth.partition(":")
        username, password = unquote(user) or None, unquote(pw) or None
    sentinels = [_host_port(h) for h in hosts.split(",") if h.strip()]
    if not sentinels:
        raise ValueError("a sentinel:// URL needs at least one host:port")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"the database in a sentinel:// URL must be a number, not {path!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    master = query.pop("master", "")
    if not master:
        raise ValueError("a sentinel:// URL needs ?master=NAME (the name the Sentinels monitor)")
    sentinel_password = query.pop("sentinel_password", None)
    if query:  # a typo must not pass silently (e.g. "mater=")
        raise ValueError(f"unknown sentinel:// URL parameter(s): {', '.join(sorted(query))}")
    return SentinelTarget(
        sentinels=sentinels,
        master=master,
        db=int(path or 0),
        username=username,
        password=password,
        sentinel_password=sentinel_password,
    )


def _host_port(text: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):  # [ipv6]:port
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ValueError(f"bad sentinel address {text!r}")
    if port and not port.isdigit():
        raise ValueError(f"bad sentinel port in {text!r}")
    return host, int(port) if port else SENTINEL_PORT


def endpoints(url: str) -> list[tuple[str, int]]:
    """The servers a URL names first: a Redis, or the Sentinels of a group."""
    if is_sentinel(url):
        return parse_sentinel_url(url).sentinels
    parts = urlsplit(url)
    return [(parts.hostname or "127.0.0.1", parts.port or 6379)]


def _timeouts(settings: Settings) -> dict[str, Any]:
    return {
        "socket_timeout": settings.redis_socket_timeout_s,
        "socket_connect_timeout": settings.redis_socket_timeout_s,
    }


def _sentinel_kwargs(target: SentinelTarget, settings: Settings) -> dict[str, Any]:
    kwargs = _timeouts(settings)
    if target.sentinel_password:
        kwargs["password"] = target.sentinel_password
    return kwargs


def _master_auth(target: SentinelTarget) -> dict[str, Any]:
    return {k: v for k, v in (("username", target.username), ("password", target.password)) if v}


# redis-py types every reply as ``bytes | str`` whichever way the client was built; these narrow a
# reply to what our clients return: str from the decoding ones (the default), bytes from the
# binary ones (``decode=False``: images, chunk inputs). Anything else is a bug, and raises.


def text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode()
    raise TypeError(f"expected a string reply, got {type(value).__name__}")


def text_or_none(value: object) -> str | None:
    return None if value is None else text(value)


def texts(values: Iterable[object]) -> list[str]:
    return [text(v) for v in values]


def binary_or_none(value: object) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    raise TypeError(f"expected a binary reply, got {type(value).__name__}")


def redis_client(settings: Settings, *, decode: bool = True) -> redis.Redis:
    """A thread-safe client for the worker, the sweeper and the tools."""
    options: dict[str, Any] = {
        "decode_responses": decode,
        **_timeouts(settings),
        "health_check_interval": 30,
        "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 1, supported_errors=_RETRIED_ERRORS),
    }
    if not is_sentinel(settings.redis_url):
        return redis.Redis.from_url(settings.redis_url, **options)
    target = parse_sentinel_url(settings.redis_url)
    manager = redis.sentinel.Sentinel(target.sentinels, sentinel_kwargs=_sentinel_kwargs(target, settings))
    client: redis.Redis = manager.master_for(target.master, db=target.db, **_master_auth(target), **options)
    return client  # (master_for is unannotated)


class _ClosedTransportIsConnectionError:
    """uvloop raises ``RuntimeError("unable to perform operation on <TCPTransport closed=True>; the
    handler is closed")`` when redis-py writes to a socket the server has just dropped (a primary
    dying, a failover): the same event as a reset connection, so it is raised as one (a 503 in the
    API, retried once like any connection error; nothing was written)."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:  # redis-py's signature
        try:
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
        except RuntimeError as exc:
            if "closed" not in str(exc):
                raise
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise redis.ConnectionError(f"connection closed while sending: {exc}") from exc


class _Connection(_ClosedTransportIsConnectionError, aredis.Connection):
    pass


class _SentinelConnection(_ClosedTransportIsConnectionError, redis.asyncio.sentinel.SentinelManagedConnection):
    pass


class _BlockingSentinelPool(redis.asyncio.sentinel.SentinelConnectionPool, aredis.BlockingConnectionPool):
    """Sentinel's master discovery with the blocking pool's wait for a free connection."""


def async_redis_client(settings: Settings, **overrides: Any) -> aredis.Redis:  # more redis.asyncio.Redis options
    """A client on a blocking pool: past ``redis_max_connections`` a request waits for a free
    connection (up to ``redis_pool_timeout_s``) instead of failing with "Too many connections"."""
    options: dict[str, Any] = {
        "decode_responses": True,
        **_timeouts(settings),
        "health_check_interval": 30,
        "max_connections": settings.redis_max_connections,
        "timeout": settings.redis_pool_timeout_s,
        "retry": aredis.retry.Retry(redis.backoff.NoBackoff(), 1, supported_errors=_RETRIED_ERRORS),
    }
    options.update(overrides)
    if not is_sentinel(settings.redis_url):
        if urlsplit(settings.redis_url).scheme == "redis":  # (rediss:// and unix:// keep their own classes)
            options.setdefault("connection_class", _Connection)
        pool = aredis.BlockingConnectionPool.from_url(settings.redis_url, **options)
        return aredis.Redis.from_pool(pool)
    target = parse_sentinel_url(settings.redis_url)
    manager = redis.asyncio.sentinel.Sentinel(target.sentinels, sentinel_kwargs=_sentinel_kwargs(target, settings))
    client: aredis.Redis = manager.master_for(  # (unannotated)
        target.master,
        connection_pool_class=_BlockingSentinelPool,
        connection_class=_SentinelConnection,
        db=target.db,
        **_master_auth(target),
        **options,
    )
    return client


def broker_url(settings: Settings) -> str:
    """The Celery/kombu broker URL: the Redis URL itself, or kombu's ``sentinel://h1;sentinel://h2`` form."""
    if not is_sentinel(settings.redis_url):
        return settings.redis_url
    target = parse_sentinel_url(settings.redis_url)
    auth = ""
    if target.username or target.password:
        auth = f"{quote(target.username or '', safe='')}:{quote(target.password or '', safe='')}@"
    return ";".join(f"sentinel://{auth}{_netloc(h, p)}/{target.db}" for h, p in target.sentinels)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """What kombu's ``sentinel`` transport needs beyond the URL (nothing for a plain Redis)."""
    if not is_sentinel(settings.redis_url):
        return {}
    target = parse_sentinel_url(settings.redis_url)
    return {"master_name": target.master, "sentinel_kwargs": _sentinel_kwargs(target, settings)}
