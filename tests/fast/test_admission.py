"""Admission control (README "Scheduling"), in process: with no worker nothing drains, so the
backlog is exactly what the test sent. The scheduling order itself, with a worker claiming work,
is tests/api/test_scheduling.py."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api.test_scheduling import KEYS
from tests.fast.conftest import ApiFactory

pytestmark = pytest.mark.anyio

IRIS = "/v1/models/iris/jobs"
ROW = [5.1, 3.5, 1.4, 0.2]


def as_(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name][0]}"}


@pytest.fixture
async def bounded(make_api: ApiFactory) -> AsyncIterator[httpx.AsyncClient]:
    keys = ",".join(entry for _, entry in KEYS.values())
    async with make_api(api_keys=keys, max_backlog=6, max_backlog_age_s=0, batch_chunk_rows=500) as api:
        yield api


async def test_a_full_queue_answers_503_to_its_only_key_and_429_to_a_key_over_its_share(bounded):
    for _ in range(6):
        assert (await bounded.post(IRIS, json={"input": ROW}, headers=as_("flood"))).status_code == 202
    full = await bounded.post(IRIS, json={"input": ROW}, headers=as_("flood"))
    assert full.status_code == 503 and full.json()["code"] == "queue_full"
    assert 1 <= int(full.headers["Retry-After"]) <= 600
    assert (await bounded.post(IRIS, json={"input": ROW}, headers=as_("other"))).status_code == 202  # its share
    hog = await bounded.post("/v1/models/iris/batches", json={"inputs": [ROW]}, headers=as_("flood"))
    assert hog.status_code == 429 and hog.json()["code"] == "fair_share_exceeded"
    assert int(hog.headers["Retry-After"]) >= 1
    queued = (await bounded.get("/v1/jobs?status=queued", headers=as_("flood"))).json()["jobs"]
    assert len(queued) == 6  # nothing refused was written


async def test_a_queue_whose_oldest_job_waited_too_long_answers_503(make_api: ApiFactory):
    keys = ",".join(entry for _, entry in KEYS.values())
    async with make_api(api_keys=keys, max_backlog_age_s=1) as api:
        assert (await api.post(IRIS, json={"input": ROW}, headers=as_("other"))).status_code == 202
        await asyncio.sleep(1.6)  # the bound is an age: the oldest job must be older than it
        late = await api.post(IRIS, json={"input": ROW}, headers=as_("other"))
        assert late.status_code == 503 and late.json()["code"] == "queue_full"
        assert "Retry-After" in late.headers
