"""Job submission as the API alone decides it: validation, unknown names, idempotency. In process,
no worker (jobs stay queued); a job that runs is tests/api/test_jobs.py."""

import json

import pytest

from tests.api.helpers import SETOSA, VIRGINICA

pytestmark = pytest.mark.anyio

IRIS = "/v1/models/iris/jobs"


async def test_idempotency_key_replays_the_same_job_and_refuses_another_body(api):
    first = await api.post(IRIS, json={"input": SETOSA}, headers={"Idempotency-Key": "order-42"})
    again = await api.post(IRIS, json={"input": SETOSA}, headers={"Idempotency-Key": "order-42"})
    assert again.status_code in (200, 202) and again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = await api.post(IRIS, json={"input": VIRGINICA}, headers={"Idempotency-Key": "order-42"})
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"


async def test_unknown_ids_and_models(api):
    for method, path in (("GET", "/v1/jobs/01JUNKNOWNJOB0000000000000"), ("POST", "/v1/jobs/nope/cancel")):
        response = await api.request(method, path)
        assert response.status_code == 404 and response.json()["code"] == "job_not_found"
    response = await api.post("/v1/models/no-such-model/jobs", json={"input": SETOSA})
    assert response.status_code == 404 and response.json()["code"] == "model_not_found"
    response = await api.post(IRIS, json={"input": SETOSA, "version": 99})
    assert response.status_code == 404 and response.json()["code"] == "model_version_not_found"


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
        # a string version names an alias (README "Model storage"): none is set here
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
async def test_bad_bodies_are_refused_with_a_reason(api, content, status, code):
    response = await api.post(IRIS, content=content, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["code"] == code and response.json()["detail"]


async def test_wrong_content_type_and_oversized_bodies(api):
    response = await api.post(IRIS, content="input=1", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"
    huge = json.dumps({"input": [1.0] * 3_000_000})
    response = await api.post(IRIS, content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"


async def test_rejected_requests_create_no_job(api):
    queued = (await api.post(IRIS, json={"input": SETOSA})).json()
    await api.post(IRIS, json={"input": [1, 2]})
    listed = (await api.get("/v1/jobs", params={"limit": 100})).json()["jobs"]
    assert [j["id"] for j in listed] == [queued["id"]]


async def test_a_job_with_no_worker_waits_queued_with_its_place_in_line(api):
    first = (await api.post(IRIS, json={"input": SETOSA})).json()
    second = (await api.post(IRIS, json={"input": VIRGINICA})).json()
    assert first["status"] == second["status"] == "queued"
    assert (await api.get(first["urls"]["get"])).json()["queue"]["position"] == 1
    assert (await api.get(second["urls"]["get"])).json()["queue"]["position"] == 2
