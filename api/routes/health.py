"""Operational endpoints: liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import StateDep
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
    """Readiness: Redis answers, and every model has a live worker on the queue it would use."""
    try:
        await state.redis.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        response.status_code = 503
        return {"status": "unavailable", "redis": f"unreachable: {exc}", "problems": ["redis unreachable"]}
    workers = await state.fleet.workers(fresh=True)
    consumers = await state.fleet.consumers()
    problems = []
    for name, versions in sorted(state.repository.models().items()):
        queue = versions[max(versions)].queue
        if queue == Queue.GPU and not consumers.get(Queue.GPU):
            queue = Queue.CPU  # gpu models fall back to CPU workers
        if not consumers.get(queue):
            problems.append(f"no live worker consumes queue {queue.value} (model {name})")
        elif not any(
            info.get("status") == "loaded" for w in workers for info in w.get("models", {}).get(name, {}).values()
        ):
            problems.append(f"model {name} is not loaded on any live worker")
    # Deliveries piling up do not stop predictions, so they warn rather than fail readiness.
    warnings = []
    if state.settings.webhook_secret and not consumers.get(Queue.WEBHOOKS):
        warnings.append("no live worker consumes queue webhooks: webhook deliveries wait")
    if problems:
        response.status_code = 503
    return {
        "status": "unavailable" if problems else "ready",
        "redis": "ok",
        "queues": consumers,
        "problems": problems,
        "warnings": warnings,
    }
