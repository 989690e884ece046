"""After the job TTL, an id answers 410 with status "expired" (a tombstone), never 404 or "running"."""

import time
from unittest.mock import ANY

import httpx
import pytest

from api.security import Scope, generate_key
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


def test_another_key_reading_an_expired_job_gets_404_as_for_a_live_one(tmp_path):
    """A 410 with the job's id told any key that the id existed; only keys that could see the live
    job (its owner, admins, read-only keys) learn that it expired."""
    keys = {name: generate_key(name, [Scope.SUBMIT, Scope.READ]) for name in ("alice", "bob")}
    entries = ",".join(entry for _, entry in keys.values())
    with running_stack(tmp_path, job_ttl_s="1", api_keys=entries) as stack:
        alice, bob = (
            httpx.Client(base_url=stack.api_url, timeout=30, headers={"Authorization": f"Bearer {keys[n][0]}"})
            for n in ("alice", "bob")
        )
        job = alice.post("/v1/models/iris/jobs", json={"input": SETOSA}, headers={"Prefer": "wait=10"}).json()
        time.sleep(1.5)
        assert alice.get(f"/v1/jobs/{job['id']}").status_code == 410
        for method, path in (("GET", ""), ("GET", "/results"), ("GET", "/events"), ("POST", "/cancel")):
            response = bob.request(method, f"/v1/jobs/{job['id']}{path}")
            assert response.status_code == 404 and response.json()["code"] == "job_not_found", (path, response.text)
            assert bob.get("/v1/jobs/01JNEVERSEEN00000000000000").json() == {**response.json(), "detail": ANY}
        alice.close()
        bob.close()
