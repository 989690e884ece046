"""What the live workers can serve, from their presence keys (see ``shared.presence``).

Submissions read it for every job, so it is cached for a second; readiness reads it fresh.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import anyio
import redis.asyncio as aredis

from shared.errors import ErrorCode, Unavailable
from shared.manifests import ModelManifest, ModelRepository
from shared.presence import WorkerPresence, live_workers
from shared.queues import MODEL_QUEUES, Queue

MODEL_QUEUE_NAMES = {q.value for q in MODEL_QUEUES}


async def listed(repository: ModelRepository) -> dict[str, dict[int, ModelManifest]]:
    """The repository's models; listing the store again, when due, in a thread (an object store
    is a network call, which must not hold the event loop)."""
    if repository.stale:
        return await anyio.to_thread.run_sync(repository.models)
    return repository.models()


def serving_queue(queue: Queue, consumers: Mapping[str, list[str]]) -> Queue:
    """Where a model's jobs go: GPU models to the gpu queue while a live worker consumes it, else
    to the CPU workers, so nothing waits for a GPU node to appear. ``consumers``: queue → workers."""
    if queue == Queue.GPU and not consumers.get(Queue.GPU):
        return Queue.CPU
    return Queue(queue)


class Fleet:
    def __init__(self, client: aredis.Redis, heartbeat_interval_s: float, max_age_s: float = 1.0) -> None:
        self.client = client
        self.heartbeat_interval_s = heartbeat_interval_s
        self.max_age_s = max_age_s
        self._workers: list[WorkerPresence] = []
        self._read_at = -1e9

    @property
    def retry_after(self) -> dict[str, str]:
        """A model's load state reaches the API with the next heartbeat: worth asking again then."""
        return {"Retry-After": str(max(1, math.ceil(self.heartbeat_interval_s)))}

    async def workers(self, fresh: bool = False) -> list[WorkerPresence]:
        if fresh or time.monotonic() - self._read_at > self.max_age_s:
            self._workers = await live_workers(self.client, self.heartbeat_interval_s)
            self._read_at = time.monotonic()
        return self._workers

    async def consumers(self, fresh: bool = False) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for w in await self.workers(fresh):
            for q in w.queues:
                out.setdefault(q, []).append(w.hostname)
        return out

    async def queue_for(self, manifest: ModelManifest) -> str:
        """The queue ``manifest``'s jobs go to now (``serving_queue``)."""
        if manifest.queue != Queue.GPU:
            return manifest.queue.value  # no need to read the fleet
        return serving_queue(manifest.queue, await self.consumers()).value

    async def resolve(self, repository: ModelRepository, name: str, pinned: int | str | None) -> ModelManifest:
        """The version a request gets. Pinned (a number or an alias such as ``staging``): that one.
        Unpinned: drawn by the model's traffic split, else its ``production`` alias, else the newest
        version; in each case among those a live worker has loaded.

        A version dropped into the repository serves only once workers load it (reload), and one
        that failed to load never serves. With no live worker at all, jobs queue for the version
        the aliases (or the newest on disk) name.
        """
        await listed(repository)
        manifest = repository.get(name, pinned)  # 404 for unknown names, versions and aliases
        routing = repository.routing(name) if pinned is None else None
        workers = [w for w in await self.workers() if w.consumes(MODEL_QUEUE_NAMES)]
        if not workers:
            routed = routing.pick() if routing else None
            return repository.get(name, routed) if routed else manifest
        loaded: set[int] = set()
        errors: list[str] = []
        for w in workers:
            for version, info in w.versions(name).items():
                if info.loaded:
                    loaded.add(int(version))
                else:
                    errors.append(f"v{version} on {w.hostname}: {info.reason}")
        why = f" ({'; '.join(errors[:3])})" if errors else ""
        if pinned is not None:
            if manifest.version not in loaded:
                raise Unavailable(
                    f"model {name} v{manifest.version} is not loaded on any live worker{why}",
                    code=ErrorCode.MODEL_VERSION_UNAVAILABLE,
                    headers=self.retry_after,
                )
            return manifest
        servable = {v for v in loaded if v in repository.models().get(name, {})}
        if routing is not None and routing.routes:
            routed = routing.pick(servable)
            if routed is None:
                raise Unavailable(
                    f"model {name}: no version its aliases route to is loaded on a live worker "
                    f"(aliases {routing.aliases}, weights {routing.weights}){why}",
                    code=ErrorCode.MODEL_UNAVAILABLE,
                    headers=self.retry_after,
                )
            return repository.get(name, routed)
        if not servable:
            raise Unavailable(
                f"model {name} is not loaded on any live worker{why}",
                code=ErrorCode.MODEL_UNAVAILABLE,
                headers=self.retry_after,
            )
        return repository.get(name, max(servable))
