"""The result cache through HTTP: a repeated input is answered without a worker."""

import socket
import time

import httpx
import pytest

from devtools.processes import running_stack
from tests.api.helpers import SETOSA, consumption_paused

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cached_stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("cache"), cache_ttl_s="2") as s:
        yield s


def test_a_repeated_input_is_answered_from_the_cache_without_a_worker(cached_stack):
    with httpx.Client(base_url=cached_stack.api_url, timeout=30) as client:
        first = client.post("/v1/models/iris/jobs", json={"input": SETOSA}, headers={"Prefer": "wait=10"}).json()
        assert first["status"] == "succeeded" and first["cached"] is False
        # from here on no worker takes anything: only the cache can answer
        with consumption_paused(cached_stack.redis.url, "worker@" + socket.gethostname()):
            positional = [SETOSA[k] for k in ("sepal_length", "sepal_width", "petal_length", "petal_width")]
            second = client.post("/v1/models/iris/jobs", json={"input": positional}, headers={"Prefer": "wait=5"})
            assert second.status_code == 200
            body = second.json()
            assert body["cached"] is True and body["output"] == first["output"] and body["id"] != first["id"]
            assert body["metrics"]["predict_ms"] == 0
            assert client.get(f"/v1/jobs/{body['id']}").json()["cached"] is True
            other = client.post(
                "/v1/models/iris/jobs", json={"input": [6.0, 2.9, 4.5, 1.5]}, headers={"Prefer": "wait=1"}
            )
            assert other.json()["status"] == "queued" and other.json()["cached"] is False  # a miss waits for a worker
        cache = client.get("/v1/models/iris").json()["cache"]
        assert cache["hits"] >= 1 and cache["lookups"] >= 3


def test_cached_entries_expire(cached_stack):
    with httpx.Client(base_url=cached_stack.api_url, timeout=30) as client:
        body = {"input": [5.0, 3.4, 1.5, 0.2]}
        client.post("/v1/models/iris/jobs", json=body, headers={"Prefer": "wait=10"})
        assert client.post("/v1/models/iris/jobs", json=body).json()["cached"] is True
        time.sleep(2.5)
        assert client.post("/v1/models/iris/jobs", json=body, headers={"Prefer": "wait=10"}).json()["cached"] is False
