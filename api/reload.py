"""Hot reload: tell every live worker to load new versions, then report what each one says."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio

from api.deps import ApiState
from api.fleet import listed
from shared.presence import LOADING, ModelState
from shared.queues import ControlCommand

RELOAD_WAIT_S = 120.0


async def reload_model(state: ApiState, model: str) -> dict[str, Any]:
    state.repository.refresh()  # list the repository again now, whatever MLQUEUE_MODELS_REFRESH_S says
    await listed(state.repository)
    newest = state.repository.get(model)  # 404 if the model is unknown
    version = str(newest.version)

    def broadcast() -> list[dict[str, Any]]:
        return state.publisher.control.broadcast(ControlCommand.RELOAD, reply=True, timeout=2.0) or []

    replies = await anyio.to_thread.run_sync(broadcast)
    # webhook-only workers answer too, but hold no models
    asked = sorted(host for reply in replies for host, answer in reply.items() if answer.get("ok") == "reloading")
    # Workers load in the background and publish the outcome in their presence key.
    deadline = asyncio.get_running_loop().time() + RELOAD_WAIT_S
    while True:
        outcome: dict[str, ModelState] = {}
        for w in await state.fleet.workers(fresh=True):
            if w.hostname in asked:
                outcome[w.hostname] = w.model_state(model, version) or ModelState(LOADING)
        settled = len(outcome) == len(asked) and all(o.status != LOADING for o in outcome.values())
        if settled or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    loaded = [h for h, o in outcome.items() if o.loaded]
    status = "loaded" if asked and len(loaded) == len(asked) else ("partial" if loaded else "failed")
    workers = {host: o.to_json() for host, o in outcome.items()}
    return {"model": model, "version": newest.version, "status": status, "workers": workers}
