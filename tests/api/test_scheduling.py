"""Priorities, fair shares, queue position, admission control and retry, through HTTP on a real stack.

The orders asserted are ones a FIFO queue cannot produce: a high job finishing while a batch
submitted before it is still running, another key's jobs finishing between a flooding key's
chunks. How long they waited is measured by ``make bench`` (the fairness workload), not here.
"""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.security import Scope, generate_key
from devtools.processes import Stack, running_stack
from shared.settings import REPO_ROOT
from tests.api.helpers import poll_until_terminal

pytestmark = pytest.mark.integration

KEYS = {
    "flood": generate_key("flood", [Scope.SUBMIT, Scope.READ]),
    "other": generate_key("other", [Scope.SUBMIT, Scope.READ]),
    "bulk": generate_key("bulk", [Scope.SUBMIT, Scope.READ], {"priority": "low", "max_priority": "normal"}),
}
BATCH_ROWS = 100_000


def iris_rows(n: int, seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    return [
        [round(rng.uniform(4.3, 7.9), 4), round(rng.uniform(2, 4.4), 4), round(rng.uniform(1, 6.9), 4), 1.0]
        for _ in range(n)
    ]


def iris_only(tmp: Path) -> Path:
    models = tmp / "models"  # iris only: a worker starts in seconds
    shutil.copytree(REPO_ROOT / "models" / "iris", models / "iris")
    return models


def start(tmp: Path, **settings: str):
    keys = ",".join(entry for _, entry in KEYS.values())
    return running_stack(tmp, models_dir=str(iris_only(tmp)), api_keys=keys, batch_chunk_rows="500", **settings)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    with start(tmp_path_factory.mktemp("scheduling")) as s:
        yield s


@pytest.fixture
def stalled(tmp_path) -> Iterator[Stack]:
    """A stack whose worker is stopped once it is ready: work waits in line, nothing drains."""
    with start(tmp_path, max_backlog="6", max_backlog_age_s="0") as s:
        s.stop("worker")
        yield s


def as_(stack: Stack, name: str) -> httpx.Client:
    return httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {KEYS[name][0]}"}, timeout=60)


def wait_done(client: httpx.Client, job_id: str) -> dict:
    return poll_until_terminal(client, job_id, timeout_s=120)


def ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()


def test_a_high_job_overtakes_a_queue_full_of_low_batch_chunks(stack):
    with as_(stack, "flood") as client:
        batch = client.post("/v1/models/iris/batches", json={"inputs": iris_rows(BATCH_ROWS, 1), "priority": "low"})
        assert batch.status_code == 202 and batch.json()["priority"] == "low"
        high = client.post("/v1/models/iris/jobs", json={"input": [5.1, 3.5, 1.4, 0.2], "priority": "high"})
        assert high.status_code == 202
        assert high.json()["queue"]["position"] == 1  # ahead of every chunk still waiting
        high_done = wait_done(client, high.json()["id"])
        batch_done = wait_done(client, batch.json()["id"])
    assert high_done["status"] == "succeeded" and batch_done["status"] == "succeeded"
    assert ts(high_done["completed_at"]) < ts(batch_done["completed_at"])  # a FIFO queue runs it last
    print(f"high queue_ms={high_done['metrics']['queue_ms']} batch total_ms={batch_done['metrics']['total_ms']}")


def test_another_keys_single_jobs_are_not_held_behind_a_flooding_batch(stack):
    with as_(stack, "flood") as flood, as_(stack, "other") as other:
        idle = [
            other.post("/v1/models/iris/jobs", json={"input": row}, headers={"Prefer": "wait=10"})
            for row in iris_rows(5, 2)
        ]
        batch = flood.post("/v1/models/iris/batches", json={"inputs": iris_rows(BATCH_ROWS, 3)})
        assert batch.status_code == 202
        during = []
        for row in iris_rows(10, 4):
            response = other.post("/v1/models/iris/jobs", json={"input": row})
            assert response.status_code == 202
            assert response.json()["queue"]["position"] <= 2  # slotted in ahead of the flood's chunks
            during.append(wait_done(other, response.json()["id"]))
        batch_done = wait_done(flood, batch.json()["id"])
    assert all(j["status"] == "succeeded" for j in during)
    assert max(ts(j["completed_at"]) for j in during) < ts(batch_done["completed_at"])
    idle_ms = sorted(r.json()["metrics"]["queue_ms"] for r in idle)
    flood_ms = sorted(j["metrics"]["queue_ms"] for j in during)
    print(f"other key queue_ms p50: idle={idle_ms[2]} during flood={flood_ms[5]}")


def test_a_keys_default_priority_applies_and_its_ceiling_is_enforced(stack):
    with as_(stack, "bulk") as bulk:
        default = bulk.post("/v1/models/iris/jobs", json={"input": [5.1, 3.5, 1.4, 0.2]})
        assert default.status_code == 202 and default.json()["priority"] == "low"
        normal = bulk.post("/v1/models/iris/jobs", json={"input": [5.1, 3.5, 1.4, 0.2], "priority": "normal"})
        assert normal.status_code == 202 and normal.json()["priority"] == "normal"
        high = bulk.post("/v1/models/iris/jobs", json={"input": [5.1, 3.5, 1.4, 0.2], "priority": "high"})
        assert high.status_code == 403 and high.json()["code"] == "priority_not_allowed"
        form = bulk.post("/v1/models/iris/batches", json={"inputs": [[5.1, 3.5, 1.4, 0.2]], "priority": "high"})
        assert form.status_code == 403


@pytest.mark.parametrize("priority", ["urgent", 1, True, "", "HIGH", ["high"], {"p": "high"}])
def test_a_priority_that_is_not_one_of_the_three_is_422(stack, priority):
    with as_(stack, "other") as client:
        response = client.post("/v1/models/iris/jobs", json={"input": [5.1, 3.5, 1.4, 0.2], "priority": priority})
        assert response.status_code == 422 and response.json()["code"] == "invalid_request"


def test_a_priority_form_field_is_checked_like_the_json_one(stack):
    with as_(stack, "other") as client:
        files = {"file": ("x.png", b"\x89PNG not really", "image/png")}
        response = client.post("/v1/models/iris/jobs", files=files, data={"priority": "urgent"})
        assert response.status_code in (415, 422)  # iris takes JSON: refused either way, never a 500


def test_a_queued_job_shows_its_place_in_the_job_its_events_and_its_model(stalled):
    with as_(stalled, "other") as client:
        low = client.post("/v1/models/iris/jobs", json={"input": [5.1, 3.5, 1.4, 0.2], "priority": "low"}).json()
        assert low["queue"] == {"position": 1, "eta_s": 0.0}
        seen: list[dict] = []
        reader = threading.Thread(target=lambda: seen.extend(events(stalled, low["id"], count=2)), daemon=True)
        reader.start()
        time.sleep(0.5)
        high = client.post("/v1/models/iris/jobs", json={"input": [5.0, 3.4, 1.5, 0.2], "priority": "high"}).json()
        assert high["queue"]["position"] == 1
        reader.join(10)
        assert [e["event"] for e in seen] == ["status", "queue"]
        assert seen[1]["data"]["queue"]["position"] == 2  # overtaken: the stream says so
        again = client.get(f"/v1/jobs/{low['id']}").json()
        assert again["queue"]["position"] == 2 and again["queue"]["eta_s"] is None  # nothing drains
        model = client.get("/v1/models/iris").json()
        assert model["queue"]["name"] == "cpu" and model["queue"]["backlog"] == 2
        assert model["queue"]["drain_rate_per_s"] == 0


def events(stack: Stack, job_id: str, count: int) -> list[dict]:
    out = []
    headers = {"Authorization": f"Bearer {KEYS['other'][0]}"}
    with httpx.stream("GET", f"{stack.api_url}/v1/jobs/{job_id}/events", headers=headers, timeout=15) as stream:
        event = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append({"event": event, "data": json.loads(line[6:])})
                if len(out) == count:
                    return out
    return out


def test_an_aborted_job_is_retried_as_a_new_linked_job(stalled):
    with as_(stalled, "other") as client:
        job = client.post("/v1/models/iris/jobs", json={"input": [5.1, 3.5, 1.4, 0.2]}, headers={"Cancel-After": "1s"})
        time.sleep(1.3)
        assert client.get(f"/v1/jobs/{job.json()['id']}").json()["status"] == "aborted"
        retry = client.post(f"/v1/jobs/{job.json()['id']}/retry")
        assert retry.status_code == 202
        assert retry.json()["retry_of"] == job.json()["id"] and retry.json()["status"] == "queued"
        assert retry.json()["id"] != job.json()["id"]
        stalled.start_worker()
        done = wait_done(client, retry.json()["id"])
        assert done["status"] == "succeeded" and done["output"]["label"] == "setosa"


def test_a_batch_retry_reruns_only_the_items_that_failed(stack):
    rows = [[5.1, 3.5, 1.4, 0.2], [1, 2], [6.7, 3.0, 5.2, 2.3], {"sepal_length": 1}, [5.9, 3.0, 4.2, 1.5]]
    with as_(stack, "other") as client:
        batch = client.post("/v1/models/iris/batches", json={"inputs": rows}, headers={"Prefer": "wait=30"}).json()
        assert batch["progress"] == {"total": 5, "done": 5, "failed": 2}
        retry = client.post(f"/v1/jobs/{batch['id']}/retry")
        assert retry.status_code == 202, retry.text
        again = wait_done(client, retry.json()["id"])
        assert again["retry_of"] == batch["id"] and again["progress"]["total"] == 2
        items = client.get(f"/v1/jobs/{again['id']}/results").json()["results"]
        assert [i["status"] for i in items] == ["failed", "failed"]  # the same bad rows, failing again


def test_only_failed_or_aborted_jobs_can_be_retried(stack):
    with as_(stack, "other") as client, as_(stack, "flood") as stranger:
        done = client.post("/v1/models/iris/jobs", json={"input": [5.1, 3.5, 1.4, 0.2]}, headers={"Prefer": "wait=30"})
        conflict = client.post(f"/v1/jobs/{done.json()['id']}/retry")
        assert conflict.status_code == 409 and conflict.json()["code"] == "job_not_retryable"
        assert stranger.post(f"/v1/jobs/{done.json()['id']}/retry").status_code == 404  # another key's job
        assert client.post("/v1/jobs/not-a-job/retry").status_code == 404
        assert client.post("/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/retry").status_code == 404
