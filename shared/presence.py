"""Worker presence in Redis: who is alive, which queues it consumes, which models it has loaded.

Each worker refreshes ``mlqueue:worker:{hostname}`` (TTL 3 heartbeats) and its score in the
``mlqueue:workers`` sorted set. The API reads them for /readyz, routing and ``GET /v1/models``;
a worker that dies simply stops refreshing and drops out.

The value is JSON (``WorkerPresence.to_json``)::

    {"hostname", "host", "address", "pid", "incarnation", "queues": [...], "started_at",
     "heartbeat_at", "models": {name: {"version": {"status": "loaded"|"loading"|"failed",
                                                  "load_ms"?, "error"?}}}}

Readers parse it with ``WorkerPresence.parse``, which takes any field as missing: during a rolling
upgrade workers of another release write it, so the format only ever grows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aredis

from shared.redis_connection import texts
from shared.redis_keys import WORKERS, worker_key

LOADED, LOADING, FAILED = "loaded", "loading", "failed"


def presence_ttl(interval_s: float) -> int:
    return max(2, int(interval_s * 3))


@dataclass(frozen=True)
class ModelState:
    """One model version on one worker: ``loaded``, ``loading`` or ``failed`` (with its error)."""

    status: str
    error: str | None = None
    load_ms: float | None = None

    @property
    def loaded(self) -> bool:
        return self.status == LOADED

    @property
    def reason(self) -> str:
        """Why it is not loaded, for the readers that report it (an older worker may send no error)."""
        return self.error or FAILED

    @classmethod
    def parse(cls, raw: object) -> ModelState:
        if not isinstance(raw, Mapping):
            return cls(FAILED, error="unreadable presence entry")
        error, load_ms = raw.get("error"), raw.get("load_ms")
        return cls(
            status=str(raw.get("status", FAILED)),
            error=str(error) if error is not None else None,
            load_ms=float(load_ms) if isinstance(load_ms, int | float) else None,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.load_ms is not None:
            out["load_ms"] = self.load_ms
        if self.error is not None:
            out["error"] = self.error
        return out


def parse_models(raw: object) -> dict[str, dict[str, ModelState]]:
    """``{name: {version: state}}`` from its JSON (versions are strings on the wire)."""
    if not isinstance(raw, Mapping):
        return {}
    return {
        str(name): {str(v): ModelState.parse(s) for v, s in versions.items()}
        for name, versions in raw.items()
        if isinstance(versions, Mapping)
    }


@dataclass(frozen=True)
class WorkerPresence:
    """What a live worker says about itself in its heartbeat."""

    hostname: str
    host: str | None = None  # the machine (its name and an address), for multi-machine fleets
    address: str | None = None
    pid: int | None = None
    incarnation: str | None = None  # changes on every start: a claim names the incarnation that holds it
    queues: tuple[str, ...] = ()
    models: Mapping[str, Mapping[str, ModelState]] = field(default_factory=dict)
    started_at: float | None = None
    heartbeat_at: float | None = None

    @classmethod
    def parse(cls, raw: object) -> WorkerPresence | None:
        """The presence a heartbeat wrote (its JSON, or that decoded); None when it is not one (no
        hostname, not JSON)."""
        try:
            data = json.loads(raw) if isinstance(raw, str | bytes) else raw
        except ValueError:
            return None
        hostname = data.get("hostname") if isinstance(data, Mapping) else None
        if not isinstance(data, Mapping) or not isinstance(hostname, str):
            return None
        queues = data.get("queues")
        pid = data.get("pid")
        return cls(
            hostname=hostname,
            host=_str_or_none(data.get("host")),
            address=_str_or_none(data.get("address")),
            pid=pid if isinstance(pid, int) else None,
            incarnation=_str_or_none(data.get("incarnation")),
            queues=tuple(str(q) for q in queues) if isinstance(queues, list) else (),
            models=parse_models(data.get("models")),
            started_at=_float_or_none(data.get("started_at")),
            heartbeat_at=_float_or_none(data.get("heartbeat_at")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "host": self.host,
            "address": self.address,
            "pid": self.pid,
            "incarnation": self.incarnation,
            "queues": list(self.queues),
            "models": {
                name: {v: state.to_json() for v, state in versions.items()} for name, versions in self.models.items()
            },
            "started_at": self.started_at,
            "heartbeat_at": self.heartbeat_at,
        }

    def versions(self, name: str) -> Mapping[str, ModelState]:
        """Model ``name``'s versions on this worker (loaded, loading or failed), by version string."""
        return self.models.get(name, {})

    def model_state(self, name: str, version: int | str) -> ModelState | None:
        """Where version ``version`` of model ``name`` stands on this worker; None if it never tried."""
        return self.versions(name).get(str(version))

    def consumes(self, queues: set[str]) -> bool:
        return not queues.isdisjoint(self.queues)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_all(values: Iterable[object]) -> list[WorkerPresence]:
    """The presences among ``values`` (an MGET's replies: None for a key that just expired)."""
    parsed = (WorkerPresence.parse(v) for v in values if v)
    return [p for p in parsed if p is not None]


async def live_workers(client: aredis.Redis, interval_s: float) -> list[WorkerPresence]:
    ttl = presence_ttl(interval_s)
    hosts = texts(await client.zrangebyscore(WORKERS, time.time() - ttl, "+inf"))
    if not hosts:
        return []
    values = await client.mget([worker_key(h) for h in hosts])
    return parse_all(values)
