"""The FastAPI application: ``uvicorn api.main:app`` or ``python -m api``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.backlog import Backlog
from api.decoding import PixelBudget
from api.deps import ApiState
from api.errors import install_error_handlers
from api.events import JobEvents
from api.fleet import Fleet
from api.group_commit import GroupCommit
from api.openapi import install_openapi
from api.ratelimit import Limit, RateLimiter
from api.request_id import RequestIdMiddleware
from api.routes import batches, health, jobs, models
from api.routes.metrics import install_metrics
from api.security import parse_api_keys
from shared.batch_store import AsyncBatchStore
from shared.celery_app import make_celery
from shared.heap import freeze_loaded_heap
from shared.manifests import ModelRepository
from shared.redis_connection import async_redis_client
from shared.settings import Settings, get_settings
from shared.store import AsyncJobStore

log = logging.getLogger(__name__)

DESCRIPTION = """Asynchronous predictions: submit a job or a batch, then poll it, wait on it with
`Prefer: wait=N`, stream its events, or receive signed webhooks. Errors are `{"detail": ..., "code": ...}`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # Bad key or limit configuration stops the start-up here, not the first request.
    api_keys = parse_api_keys(settings.api_keys)
    limits = {
        "default": Limit.parse(settings.rate_limit),
        "batch": Limit.parse(settings.batch_rate_limit),
        "auth_failure": Limit.parse(settings.auth_failure_limit),
    }

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = async_redis_client(settings)
        binary = async_redis_client(settings, decode_responses=False)
        events = JobEvents(async_redis_client(settings, max_connections=4))
        store = AsyncJobStore(client, settings)
        publisher = make_celery(settings, publisher=True)
        state = ApiState(
            settings=settings,
            redis=client,
            store=store,
            events=events,
            repository=ModelRepository.from_settings(settings),
            publisher=publisher,
            fleet=Fleet(client, settings.heartbeat_interval_s),
            batches=AsyncBatchStore(client, binary, settings.job_ttl_s, settings.priority_step),
            api_keys=api_keys,
            limiter=RateLimiter(client, limits),
            pixel_budget=PixelBudget(settings.decode_pixel_budget),
            groups=GroupCommit(store, publisher),
            backlog=Backlog(client, settings, {f"key:{k.name}": k.weight for k in api_keys.values()}),
        )
        if not api_keys:
            log.warning("auth.disabled: no MLQUEUE_API_KEYS configured; anyone who can reach the API can use it")
        app.state.mlqueue = state
        events.start()
        freeze_loaded_heap()
        try:
            yield
        finally:
            await events.stop()
            await client.aclose()
            await binary.aclose()
            await events.client.aclose()

    app = FastAPI(title="mlqueue", version="1.0.0", description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    install_metrics(app)
    app.include_router(jobs.router)
    app.include_router(batches.router)
    app.include_router(models.router)
    app.include_router(health.router)
    install_openapi(app)
    return app


app = create_app()
