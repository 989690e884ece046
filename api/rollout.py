"""Aliases and traffic split of a model (``shared.routing``), written to the model repository.

The repository is a folder or an object store, so each change is a blocking write: it runs in a
thread. Every API process sees a change at its next listing (``MLQUEUE_MODELS_REFRESH_S``); the
one that made it, at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from api.deps import ApiState
from shared.errors import Conflict, ErrorCode, InvalidInput, NotFound
from shared.manifests import ModelRepository
from shared.routing import ALIAS_MAX, ALIAS_RE, Routing


def check_alias_name(alias: str) -> str:
    if not ALIAS_RE.fullmatch(alias):
        raise InvalidInput(
            f"an alias is a letter then up to {ALIAS_MAX - 1} letters, digits, '_' or '-'", code=ErrorCode.INVALID_ALIAS
        )
    return alias


def routing_view(routing: Routing) -> dict[str, Any]:
    return {"aliases": routing.aliases, "traffic": routing.weights, "routing_updated_at": routing.updated_at}


async def set_alias(state: ApiState, model: str, alias: str, version: int) -> dict[str, Any]:
    check_alias_name(alias)

    def change(routing: Routing) -> None:
        state.repository.get(model, version)  # 404 for a version the repository does not have
        routing.aliases[alias] = version

    return routing_view(await _update(state.repository, model, change))


async def delete_alias(state: ApiState, model: str, alias: str) -> dict[str, Any]:
    check_alias_name(alias)

    def change(routing: Routing) -> None:
        if alias not in routing.aliases:
            raise NotFound(f"model {model} has no alias {alias!r}", code=ErrorCode.ALIAS_NOT_FOUND)
        if routing.weights.get(alias):
            raise Conflict(f"alias {alias!r} carries {routing.weights[alias]}% of the traffic: move that first")
        del routing.aliases[alias]
        routing.weights.pop(alias, None)

    return routing_view(await _update(state.repository, model, change))


async def set_traffic(state: ApiState, model: str, weights: dict[str, int]) -> dict[str, Any]:
    def change(routing: Routing) -> None:
        unknown = sorted(set(weights) - set(routing.aliases))
        if unknown:
            raise InvalidInput(
                f"weights name aliases that model {model} does not have: {', '.join(unknown)} "
                f"(has {sorted(routing.aliases)})",
                code=ErrorCode.ALIAS_NOT_FOUND,
            )
        routing.weights = dict(weights)

    return routing_view(await _update(state.repository, model, change))


async def _update(repository: ModelRepository, model: str, change: Callable[[Routing], None]) -> Routing:
    return await anyio.to_thread.run_sync(repository.update_routing, model, change)
