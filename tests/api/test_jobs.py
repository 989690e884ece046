"""Jobs through HTTP against a real Redis, a real Celery worker and the real API process."""

import json
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


def test_idempotency_key_replays_the_same_job_and_refuses_another_body(client):
    first = submit(client, **{"Idempotency-Key": "order-42"})
    again = submit(client, **{"Idempotency-Key": "order-42"})
    assert again.status_code in (200, 202) and again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = submit(client, body={"input": VIRGINICA}, **{"Idempotency-Key": "order-42"})
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"


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


def test_unknown_ids_and_models(client):
    for method, path in (("GET", "/v1/jobs/01JUNKNOWNJOB0000000000000"), ("POST", "/v1/jobs/nope/cancel")):
        response = client.request(method, path)
        assert response.status_code == 404 and response.json()["code"] == "job_not_found"
    response = submit(client, model="no-such-model")
    assert response.status_code == 404 and response.json()["code"] == "model_not_found"
    response = submit(client, body={"input": SETOSA, "version": 99})
    assert response.status_code == 404 and response.json()["code"] == "model_version_not_found"


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


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (json.dumps({"input": [5.1, 3.5, 1.4]}), 422, "invalid_input"),
        (json.dumps({"input": [5.1, "x", 1.4, 0.2]}), 422, "invalid_input"),
        (json.dumps({"input": {**SETOSA, "petal_width": None}}), 422, "invalid_input"),
        (json.dumps({"input": {"sepal_length": 5.1}}), 422, "invalid_input"),
        ('{"input": [NaN, 3.5, 1.4, 0.2]}', 422, "invalid_input"),
        ('{"input": [Infinity, 3.5, 1.4, 0.2]}', 422, "invalid_input"),
        ('{"input": [1e999, 3.5, 1.4, 0.2]}', 422, "invalid_input"),
        (json.dumps({"input": [True, 3.5, 1.4, 0.2]}), 422, "invalid_input"),
        (json.dumps({"inputs": [1, 2, 3, 4]}), 422, "invalid_request"),
        (json.dumps({"input": [1, 2, 3, 4], "version": "latest"}), 404, "alias_not_found"),  # an unset alias
        (json.dumps({"input": [1, 2, 3, 4], "version": "1.5"}), 422, "invalid_request"),
        (json.dumps([5.1, 3.5, 1.4, 0.2]), 422, "invalid_request"),
        (json.dumps("hello"), 422, "invalid_request"),
        ("", 400, "invalid_json"),
        ("{not json", 400, "invalid_json"),
        ("\xff\xfe", 400, "invalid_json"),
        ('{"input": ' + "[" * 100_000 + "]" * 100_000 + "}", 400, "invalid_json"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(client, content, status, code):
    response = client.post("/v1/models/iris/jobs", content=content, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["code"] == code and response.json()["detail"]


def test_wrong_content_type_and_oversized_bodies(client):
    response = client.post("/v1/models/iris/jobs", content="input=1", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"
    huge = json.dumps({"input": [1.0] * 3_000_000})
    response = client.post("/v1/models/iris/jobs", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"


def test_rejected_requests_create_no_job(client):
    before = client.get("/v1/jobs", params={"limit": 100}).json()["jobs"]
    client.post("/v1/models/iris/jobs", json={"input": [1, 2]})
    after = client.get("/v1/jobs", params={"limit": 100}).json()["jobs"]
    assert [j["id"] for j in after] == [j["id"] for j in before]


def test_the_waited_answer_is_the_stored_record(client):
    """A waiting request answers from the worker's event, not a read: it must equal the record."""
    waited = submit(client, body={"input": VIRGINICA}, Prefer="wait=10").json()
    assert waited["status"] == "succeeded"
    assert waited == client.get(f"/v1/jobs/{waited['id']}").json()
