"""Every key mlqueue writes expires: Redis must not grow forever under a steady load."""

import io

import httpx
import pytest
import redis
from PIL import Image

from devtools.processes import running_stack
from tests.api.helpers import SETOSA

pytestmark = pytest.mark.integration

# Celery's queues (lists named after the queues) and kombu's bindings and unacked bookkeeping belong to the broker: they
# hold messages, not data, and must not expire.
BROKER_KEYS = {"cpu", "gpu", "webhooks", "unacked", "unacked_index", "unacked_mutex"}


def test_every_key_written_by_a_mixed_workload_has_a_ttl(tmp_path):
    with (
        running_stack(tmp_path, cache_ttl_s="3600", rate_limit="1000/minute") as stack,
        httpx.Client(base_url=stack.api_url, timeout=60) as client,
    ):
        wait = {"Prefer": "wait=30"}
        client.post("/v1/models/iris/jobs", json={"input": SETOSA}, headers=wait)
        client.post("/v1/models/iris/jobs", json={"input": SETOSA}, headers=wait)  # a cache hit
        client.post("/v1/models/iris/jobs", json={"input": [1, 2, 3, 4]}, headers={"Idempotency-Key": "k", **wait})
        client.post("/v1/models/iris/batches", json={"inputs": [[5.1, 3.5, 1.4, 0.2], [1, 2]] * 3000}, headers=wait)
        buffer = io.BytesIO()
        Image.new("RGB", (50, 50), "white").save(buffer, "PNG")
        client.post("/v1/models/digits/jobs", files={"file": ("x.png", buffer.getvalue())}, headers=wait)
        queued = client.post("/v1/models/anomaly/jobs", json={"input": [1] * 8, "version": 1}).json()
        client.post(f"/v1/jobs/{queued['id']}/cancel")
        client.get("/v1/jobs/01JNOSUCHJOB00000000000000")
        r = redis.Redis.from_url(stack.redis.url, decode_responses=True)
        keys = [k for k in r.scan_iter(count=1000) if k not in BROKER_KEYS and not k.startswith("_kombu.")]
        assert len(keys) > 10
        immortal = [k for k in keys if r.ttl(k) == -1]
        assert immortal == [], immortal
