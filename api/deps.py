"""What routes depend on: the process-wide API state and typed dependency aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import redis.asyncio as aredis
from celery import Celery
from fastapi import Depends, Request

from api.backlog import Backlog
from api.decoding import PixelBudget
from api.events import JobEvents
from api.fleet import Fleet
from api.group_commit import GroupCommit
from api.ratelimit import RateLimiter
from shared.batch_store import AsyncBatchStore
from shared.manifests import ModelRepository
from shared.settings import Settings
from shared.store import AsyncJobStore

if TYPE_CHECKING:  # api.security depends on this module
    from api.security import ApiKey


@dataclass
class ApiState:
    settings: Settings
    redis: aredis.Redis
    store: AsyncJobStore
    events: JobEvents
    repository: ModelRepository
    publisher: Celery
    fleet: Fleet
    batches: AsyncBatchStore
    api_keys: dict[str, ApiKey]  # by the sha256 of the key
    limiter: RateLimiter
    pixel_budget: PixelBudget
    groups: GroupCommit  # single jobs are written through it, with those submitted at the same time
    backlog: Backlog  # admission control and a queued job's place in line


def state_of(request: Request) -> ApiState:
    state: ApiState = request.app.state.mlqueue  # Starlette's State holds its attributes untyped
    return state


async def get_state(request: Request) -> ApiState:
    """A dependency; async so FastAPI does not send it to the thread pool on every request."""
    return state_of(request)


StateDep = Annotated[ApiState, Depends(get_state)]
