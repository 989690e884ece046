"""Operational endpoints: liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import StateDep
from api.fleet import listed, serving_queue
from shared.presence import LOADING, WorkerPresence
from shared.queues import Queue

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


# Not ready is the same report as ready (an object with `status` and `problems`), with a 503.
NOT_READY = {
    "description": "Not ready: see `problems`",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


@router.get("/readyz", responses={503: NOT_READY})
async def readyz(state: StateDep, response: Response) -> dict[str, Any]:
    """Readiness: Redis answers and every queue that has models has a live worker (503 otherwise).
    A model no live worker has loaded is reported in ``degraded`` (200): its own jobs answer 503
    ``model_unavailable``, but it must not take a replica serving the other models out of service."""
    try:
        await state.redis.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        response.status_code = 503
        return {"status": "unavailable", "redis": f"unreachable: {exc}", "problems": ["redis unreachable"]}
    workers = await state.fleet.workers(fresh=True)
    consumers = await state.fleet.consumers()
    problems: list[str] = []
    models: dict[str, dict[str, Any]] = {}
    for name, versions in sorted((await listed(state.repository)).items()):
        queue = serving_queue(versions[max(versions)].queue, consumers)
        if not consumers.get(queue):
            problems.append(f"no live worker consumes queue {queue.value} (model {name})")
            models[name] = {"status": "no_worker", "queue": queue.value}
        else:
            models[name] = model_readiness(name, workers)
    degraded = sorted(name for name, m in models.items() if m["status"] != "ready")
    # Deliveries piling up do not stop predictions, so they warn rather than fail readiness.
    warnings = []
    if state.settings.webhook_secret and not consumers.get(Queue.WEBHOOKS):
        warnings.append("no live worker consumes queue webhooks: webhook deliveries wait")
    if problems:
        response.status_code = 503
    return {
        "status": "unavailable" if problems else "degraded" if degraded else "ready",
        "redis": "ok",
        "queues": consumers,
        "workers": [  # where each live worker runs: its machine and the address it advertises
            {
                "hostname": w.hostname,
                "host": w.host,
                "address": w.address,
                "queues": list(w.queues),
                "started_at": w.started_at,
            }
            for w in workers
        ],
        "models": models,
        "degraded": degraded,
        "problems": problems,
        "warnings": warnings,
    }


def model_readiness(name: str, workers: list[WorkerPresence]) -> dict[str, Any]:
    """``ready`` when some live worker has a version loaded, else ``loading`` (one is on its way)
    or ``failed`` (with the workers' load errors)."""
    states = [(w.hostname, v, info) for w in workers for v, info in w.versions(name).items()]
    if any(info.loaded for _, _, info in states):
        return {"status": "ready"}
    if any(info.status == LOADING for _, _, info in states):
        return {"status": "loading"}
    errors = {f"v{v}@{host}": info.reason for host, v, info in states}
    return {"status": "failed", "errors": errors or {"-": "not loaded on any live worker"}}
