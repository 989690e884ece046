"""Jobs through HTTP against a real Redis, a real Celery worker and the real API process."""

import socket

import pytest

from tests.api.helpers import SETOSA, VIRGINICA, consumption_paused, poll_until_terminal, submit

pytestmark = pytest.mark.integration


def test_submit_then_poll_until_succeeded(client):
    response = submit(client)
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}" == job["urls"]["get"]
    assert job["status"] in ("queued", "running", "succeeded") and job["model"] == "iris" and job["version"] == 1
    done = poll_until_terminal(client, job["id"])
    assert done["status"] == "succeeded"
    assert done["output"]["label"] == "setosa" and done["output"]["class_index"] == 0
    assert set(done["output"]["probabilities"]) == {"setosa", "versicolor", "virginica"}
    assert done["metrics"]["queue_ms"] >= 0 and done["metrics"]["predict_ms"] >= 0
    assert done["started_at"] and done["completed_at"] >= done["started_at"]


def test_prefer_wait_returns_the_finished_job(client):
    response = submit(client, body={"input": VIRGINICA}, Prefer="wait=10")
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "wait=10"
    assert response.json()["status"] == "succeeded" and response.json()["output"]["label"] == "virginica"


def test_prefer_wait_times_out_with_202_when_nothing_runs(client, stack):
    with consumption_paused(stack.redis.url, "worker@" + socket.gethostname()):
        response = submit(client, Prefer="wait=1")
        assert response.status_code == 202 and response.json()["status"] == "queued"
    assert poll_until_terminal(client, response.json()["id"])["status"] == "succeeded"


def test_cancel_a_queued_job_and_the_worker_leaves_it_canceled(client, stack):
    with consumption_paused(stack.redis.url, "worker@" + socket.gethostname()):
        job = submit(client).json()
        canceled = client.post(f"/v1/jobs/{job['id']}/cancel")
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    # the worker now receives the message and must leave the job alone
    follow = submit(client, Prefer="wait=10")
    assert follow.json()["status"] == "succeeded"
    final = client.get(f"/v1/jobs/{job['id']}").json()
    assert final["status"] == "canceled" and final["output"] is None


def test_cancel_a_finished_job_is_a_conflict(client):
    job = submit(client, Prefer="wait=10").json()
    response = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 409 and response.json()["code"] == "job_not_cancelable"


def test_list_jobs_newest_first_with_filters_and_cursor(client):
    ids = [submit(client, Prefer="wait=10").json()["id"] for _ in range(3)]
    page = client.get("/v1/jobs", params={"model": "iris", "limit": 2}).json()
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2]
    rest = client.get("/v1/jobs", params={"model": "iris", "limit": 1, "cursor": page["next_cursor"]}).json()
    assert rest["jobs"][0]["id"] == ids[0]
    succeeded = client.get("/v1/jobs", params={"status": "succeeded", "limit": 100}).json()["jobs"]
    assert succeeded and all(j["status"] == "succeeded" for j in succeeded)
    for params in ({"status": "bogus"}, {"limit": 0}, {"limit": 1000}, {"cursor": "x; DROP"}):
        response = client.get("/v1/jobs", params=params)
        assert response.status_code == 422 and response.json()["code"] == "invalid_request", params


def test_hostile_requests_through_the_real_server_then_a_job_still_runs(client):
    """The corpus runs in process (tests/fast/test_hostile_inputs.py); these rows are the ones the
    server parses before the app sees them (raw header bytes, an encoded path, a 10 KB URL)."""
    for method, path, headers, status in (
        ("POST", "/v1/models/iris/jobs", {"Idempotency-Key": b"caf\xe9"}, 400),
        ("POST", "/v1/models/iris/jobs", {"Cancel-After": "²s".encode()}, 400),
        ("GET", "/v1/jobs/..%2F..%2Fmetrics", {}, 404),
        ("GET", "/v1/jobs/" + "A" * 10_000, {}, 404),
    ):
        response = client.request(method, path, json={"input": SETOSA}, headers=headers)
        assert response.status_code == status and response.json()["code"], (path, response.text[:300])
    assert submit(client, Prefer="wait=10").json()["output"]["label"] == "setosa"


def test_the_waited_answer_is_the_stored_record(client):
    """A waiting request answers from the worker's event, not a read: it must equal the record."""
    waited = submit(client, body={"input": VIRGINICA}, Prefer="wait=10").json()
    assert waited["status"] == "succeeded"
    assert waited == client.get(f"/v1/jobs/{waited['id']}").json()
