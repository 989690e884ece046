"""Model repository routes: manifests, input schemas, where each version is loaded, reload,
aliases and traffic split."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from api import rollout
from api.deps import ApiState, StateDep
from api.fleet import listed
from api.openapi import error_responses
from api.reload import reload_model as reload_everywhere
from api.rollout import routing_view
from api.security import Principal, Scope, authorize
from shared import cache
from shared.manifests import ModelManifest
from shared.presence import WorkerPresence
from shared.routing import AliasSet, TrafficSplit

router = APIRouter(prefix="/v1", tags=["models"])
Reader = Annotated[Principal, Depends(authorize(Scope.READ))]
Admin = Annotated[Principal, Depends(authorize(Scope.ADMIN))]


def describe(manifest: ModelManifest, workers: list[WorkerPresence], aliases: dict[str, int]) -> dict[str, Any]:
    loaded_on: list[str] = []
    errors: dict[str, str] = {}
    for w in workers:
        state = w.model_state(manifest.name, manifest.version)
        if state is not None and state.loaded:
            loaded_on.append(w.hostname)
        elif state is not None:
            errors[w.hostname] = state.reason
    return {
        **manifest.model_dump(mode="json"),
        "input_schema": manifest.input_json_schema(),
        "loaded_on": loaded_on,
        "load_errors": errors,
        "aliases": sorted(a for a, v in aliases.items() if v == manifest.version),
    }


async def queue_entry(state: ApiState, manifest: ModelManifest) -> dict[str, Any]:
    """The model queue its jobs wait in now: work waiting (single jobs and batch chunks, every
    model of that queue), the oldest one's age, and how fast it drains."""
    queue = await state.fleet.queue_for(manifest)
    line = await state.backlog.state(queue)
    return {
        "name": queue,
        "backlog": line.backlog,
        "oldest_age_s": round(line.oldest_age_s, 3),
        "drain_rate_per_s": round(line.drain_rate, 3),
    }


async def model_entries(state: ApiState, names: list[str]) -> list[dict[str, Any]]:
    models = await listed(state.repository)
    workers = await state.fleet.workers(fresh=True)
    cache_stats = await cache.stats(state.redis)
    entries = []
    for name in names:
        routing = state.repository.routing(name)
        versions = sorted(models[name], reverse=True)
        entries.append(
            {
                "name": name,
                "latest_version": versions[0],
                **routing_view(routing),
                "queue": await queue_entry(state, models[name][versions[0]]),
                "cache": cache_stats.get(name, {"hits": 0, "lookups": 0}),
                "versions": [describe(models[name][v], workers, routing.aliases) for v in versions],
            }
        )
    return entries


@router.get("/models", responses=error_responses())
async def list_models(state: StateDep, principal: Reader) -> dict[str, Any]:
    """Every model: its versions, input schema, labels, threshold, metrics and where it is loaded."""
    return {"models": await model_entries(state, sorted(await listed(state.repository)))}


@router.get("/models/{model}", responses=error_responses(404, 422))
async def read_model(model: str, state: StateDep, principal: Reader) -> dict[str, Any]:
    """One model with all of its versions (newest first), its aliases and its traffic split."""
    await listed(state.repository)
    state.repository.get(model)  # 404 if unknown
    return (await model_entries(state, [model]))[0]


@router.post("/models/{model}/reload", responses=error_responses(404, 422))
async def reload_model(model: str, state: StateDep, principal: Admin) -> dict[str, Any]:
    """Admin: every live worker loads the versions now in the model repository; queued jobs keep running."""
    return await reload_everywhere(state, model)


@router.post("/models/{model}/aliases/{alias}", responses=error_responses(400, 404, 409, 422))
async def set_model_alias(model: str, alias: str, body: AliasSet, state: StateDep, principal: Admin) -> dict[str, Any]:
    """Admin: point an alias (``production``, ``staging``, any name) at a version; jobs may ask for it."""
    return await rollout.set_alias(state, model, alias, body.version)


@router.delete("/models/{model}/aliases/{alias}", responses=error_responses(404, 409, 422))
async def delete_model_alias(model: str, alias: str, state: StateDep, principal: Admin) -> dict[str, Any]:
    """Admin: remove an alias (409 while it carries traffic)."""
    return await rollout.delete_alias(state, model, alias)


@router.post("/models/{model}/traffic", responses=error_responses(400, 404, 409, 422))
async def set_model_traffic(model: str, body: TrafficSplit, state: StateDep, principal: Admin) -> dict[str, Any]:
    """Admin: split unpinned jobs between aliases by percent (``{}``: all follow ``production``)."""
    return await rollout.set_traffic(state, model, body.weights)
