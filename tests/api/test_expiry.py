"""After the job TTL, an id answers 410 with status "expired" (a tombstone), never 404 or "running"."""

import time

import httpx
import pytest

from devtools.processes import running_stack
from tests.api.helpers import SETOSA

pytestmark = pytest.mark.integration


def test_an_expired_job_answers_410_expired_everywhere(tmp_path):
    with running_stack(tmp_path, job_ttl_s="1") as stack, httpx.Client(base_url=stack.api_url, timeout=30) as client:
        job = client.post("/v1/models/iris/jobs", json={"input": SETOSA}, headers={"Prefer": "wait=10"}).json()
        assert client.get(f"/v1/jobs/{job['id']}").status_code == 200
        time.sleep(1.5)
        for method, path in (("GET", ""), ("GET", "/results"), ("GET", "/events"), ("POST", "/cancel")):
            response = client.request(method, f"/v1/jobs/{job['id']}{path}")
            assert response.status_code == 410, (path, response.text)
            assert response.json() == {
                "id": job["id"],
                "status": "expired",
                "detail": response.json()["detail"],
                "code": "expired",
            }
        assert client.get("/v1/jobs/01JNEVERSEEN00000000000000").status_code == 404
        assert job["id"] not in [j["id"] for j in client.get("/v1/jobs").json()["jobs"]]
