"""Fault tests: Redis stopped and restarted, a worker missing. Each builds its own stack."""

import asyncio
import time

import httpx
import pytest

from tests.api.helpers import SETOSA

pytestmark = [pytest.mark.integration, pytest.mark.fault]


def test_redis_down_is_a_quick_503_and_everything_recovers(own_stack):
    with httpx.Client(base_url=own_stack.api_url, timeout=30) as client:
        done = client.post("/v1/models/iris/jobs", json={"input": SETOSA}, headers={"Prefer": "wait=10"}).json()
        own_stack.redis.stop()
        for method, path, body in (
            ("POST", "/v1/models/iris/jobs", {"input": SETOSA}),
            ("GET", f"/v1/jobs/{done['id']}", None),
            ("GET", "/v1/jobs", None),
            ("POST", f"/v1/jobs/{done['id']}/cancel", None),
        ):
            started = time.monotonic()
            response = client.request(method, path, json=body)
            assert response.status_code == 503, (path, response.text)
            assert response.json()["code"] == "store_unavailable"  # nothing answers broker_unavailable
            assert time.monotonic() - started < 5
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200

        own_stack.redis.start()
        own_stack.wait_ready(timeout_s=60)
        response = client.post("/v1/models/iris/jobs", json={"input": SETOSA}, headers={"Prefer": "wait=30"})
        assert response.status_code == 200 and response.json()["output"]["label"] == "setosa"


def test_readiness_needs_a_live_worker_and_queued_jobs_wait_for_one(own_stack):
    with httpx.Client(base_url=own_stack.api_url, timeout=30) as client:
        own_stack.stop("worker")
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "no live worker" in ready.json()["problems"][0]
        job = client.post("/v1/models/iris/jobs", json={"input": SETOSA}).json()
        assert job["status"] == "queued"  # accepted and kept, not refused
        own_stack.start_worker()
        response = client.post("/v1/models/iris/jobs", json={"input": SETOSA}, headers={"Prefer": "wait=60"})
        assert response.json()["status"] == "succeeded"
        assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"


def test_the_first_requests_after_a_redis_restart_all_succeed(own_stack):
    """Every pooled connection is dead after a restart; each is retried once, not answered with a 503."""

    async def fill_the_pool() -> None:  # many concurrent requests leave many pooled connections
        async with httpx.AsyncClient(base_url=own_stack.api_url, timeout=30) as client:
            await asyncio.gather(*(client.get("/v1/jobs") for _ in range(40)))

    asyncio.run(fill_the_pool())
    own_stack.redis.stop()
    own_stack.redis.start()
    with httpx.Client(base_url=own_stack.api_url, timeout=30) as client:
        statuses = [client.get("/v1/jobs").status_code for _ in range(40)]
    assert statuses == [200] * 40
