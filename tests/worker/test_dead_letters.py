"""Fault test: an input that kills its worker every time becomes a dead letter, not a crash loop.

The test model ``poison`` (``tests/fixtures/poison_model.py``) calls ``os._exit`` when a row's first
feature is 666. The worker is restarted each time it dies, as a supervisor would; after
``max_deliveries`` deaths the job fails with ``poison_job`` and the restarts stop. The innocent jobs
that shared the poison job's forward pass are run again alone, and succeed.
"""

from __future__ import annotations

import time

import httpx
import pytest

from devtools.processes import running_stack
from shared.settings import REPO_ROOT
from tests.fixtures.poison_model import POISON, write_poison_model

pytestmark = [pytest.mark.integration, pytest.mark.fault]

MAX_DELIVERIES = 2


def test_a_job_that_kills_its_worker_is_dead_lettered_and_its_neighbours_succeed(tmp_path):
    models = tmp_path / "models"
    write_poison_model(models, REPO_ROOT / "models" / "iris")
    settings = {
        "models_dir": str(models),
        "max_deliveries": str(MAX_DELIVERIES),
        "sweep_interval_s": "0.5",
        "worker_slots": "1",
    }
    with running_stack(tmp_path, **settings) as stack, httpx.Client(base_url=stack.api_url, timeout=30) as client:
        stack.stop("worker")  # queue them all first, so they share a claim and a forward pass
        innocent = [client.post("/v1/models/poison/jobs", json={"input": [5.0 + i / 10, 3, 1, 0]}) for i in range(3)]
        poison = client.post("/v1/models/poison/jobs", json={"input": [POISON, 3, 1, 0]})
        ids = [r.json()["id"] for r in innocent]
        assert poison.status_code == 202 and all(r.status_code == 202 for r in innocent)

        deaths, deadline = 0, time.monotonic() + 90
        stack.start_worker()
        while time.monotonic() < deadline:
            job = client.get(f"/v1/jobs/{poison.json()['id']}").json()
            if job["status"] not in ("queued", "running"):
                break
            if stack.procs["worker"].poll() is not None:  # it died: restart it, as a supervisor would
                deaths += 1
                stack.procs.pop("worker")
                stack.start_worker()
            time.sleep(0.2)
        assert job["status"] == "failed" and job["error"]["code"] == "poison_job", job
        assert deaths == MAX_DELIVERIES  # killed once per delivery, then never again
        for job_id in ids:
            for _ in range(100):
                neighbour = client.get(f"/v1/jobs/{job_id}").json()
                if neighbour["status"] == "succeeded":
                    break
                time.sleep(0.1)
            assert neighbour["status"] == "succeeded", neighbour
        time.sleep(2)
        assert stack.procs["worker"].poll() is None  # no crash loop: the worker stays up

        letters = client.get("/v1/jobs", params={"status": "failed", "reason": "poison_job"}).json()["jobs"]
        assert [j["id"] for j in letters] == [poison.json()["id"]]
        assert "job.dead_letter" in stack.log("worker")
