"""API keys, scopes and the failed-authentication limit, in process (no worker); what needs a job to
run or Redis to restart is tests/api/test_security.py."""

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api.helpers import SETOSA
from tests.api.test_security import KEYS
from tests.fast.conftest import ApiFactory

pytestmark = pytest.mark.anyio

IRIS = "/v1/models/iris/jobs"


@pytest.fixture
async def secured(make_api: ApiFactory) -> AsyncIterator[httpx.AsyncClient]:
    keys = ",".join(entry for _, entry in KEYS.values())
    async with make_api(api_keys=keys, auth_failure_limit="10/minute") as api:
        yield api


def as_(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name][0]}"}


async def test_missing_or_unknown_key_is_401_and_wrong_scope_403(secured):
    response = await secured.post(IRIS, json={"input": SETOSA})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert (await secured.get("/healthz")).status_code == 200  # ops endpoints stay open
    bad = await secured.get("/v1/jobs", headers={"Authorization": "Bearer mlq_x_notakey"})
    assert bad.status_code == 401 and bad.json()["code"] == "invalid_api_key"
    assert (await secured.get("/v1/jobs", headers={"Authorization": "Basic abc"})).status_code == 401
    response = await secured.post(IRIS, json={"input": SETOSA}, headers=as_("reader"))
    assert response.status_code == 403 and response.json()["code"] == "insufficient_scope"
    assert (await secured.get("/v1/models", headers=as_("reader"))).status_code == 200
    assert (await secured.post("/v1/models/iris/reload", headers=as_("alice"))).status_code == 403


async def test_idempotency_keys_are_per_api_key(secured):
    a = await secured.post(IRIS, json={"input": SETOSA}, headers={**as_("alice"), "Idempotency-Key": "k1"})
    b = await secured.post(IRIS, json={"input": SETOSA}, headers={**as_("bob"), "Idempotency-Key": "k1"})
    assert a.status_code == b.status_code == 202 and a.json()["id"] != b.json()["id"]


async def test_failed_authentications_are_rate_limited_per_address_and_valid_keys_still_work(secured):
    statuses = [await secured.get("/v1/jobs", headers={"Authorization": f"Bearer mlq_x_guess{i}"}) for i in range(15)]
    codes = [r.status_code for r in statuses]
    assert codes == [401] * 10 + [429] * 5, codes  # 10/minute
    limited = statuses[-1]
    assert limited.json()["code"] == "auth_rate_limited" and int(limited.headers["retry-after"]) >= 1
    # only failures count: a valid key from the same address is served
    assert (await secured.get("/v1/jobs", headers=as_("alice"))).status_code == 200
