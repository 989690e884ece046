"""``GET /metrics``: the API's Prometheus metrics (``api.metrics``), with the queue gauges read
fresh for each scrape; and the middleware that counts every request."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request, Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from api.http_metrics import MetricsMiddleware
from api.metrics import REGISTRY
from api.queue_metrics import QueueSampler
from api.security import require_metrics_token


def install_metrics(app: FastAPI) -> None:
    """Add the request metrics middleware and ``GET /metrics``."""
    app.add_middleware(MetricsMiddleware)
    sampler = QueueSampler()

    @app.get(
        "/metrics",
        tags=["ops"],
        dependencies=[Depends(require_metrics_token)],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_PLAIN_0_0_4: {}}, "description": "Prometheus text format 0.0.4"}},
    )
    async def metrics(request: Request) -> Response:
        """Prometheus metrics: HTTP requests and latency by route, jobs created, and per queue its depth,
        the age of its oldest job, its live consumers and the jobs waiting with none."""
        await sampler.sample(request.app.state.mlqueue)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_PLAIN_0_0_4)
