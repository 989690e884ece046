"""Batch jobs through HTTP: chunked, ordered, per-item errors, progress, cancel, NDJSON."""

import json
import socket
import time

import httpx
import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris

from shared.settings import REPO_ROOT
from tests.api.helpers import consumption_paused, poll_until_terminal

pytestmark = pytest.mark.integration

IRIS = load_iris()


def batch(client, inputs, **headers):
    return client.post("/v1/models/iris/batches", json={"inputs": inputs}, headers=headers)


def test_a_batch_returns_every_row_in_order_with_bad_rows_failing_alone(client):
    rows = [list(map(float, r)) for r in IRIS.data[:30]]
    rows[7] = [1.0, 2.0]  # wrong count
    rows[12] = {"sepal_length": "x"}  # not a number, missing names
    response = batch(client, rows, Prefer="wait=30")
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["kind"] == "batch" and job["status"] == "succeeded"
    assert job["progress"] == {"total": 30, "done": 30, "failed": 2}
    assert job["output"] == {"succeeded": 28, "failed": 2}
    assert job["urls"]["results"] == f"/v1/jobs/{job['id']}/results"
    page = client.get(job["urls"]["results"], params={"offset": 5, "limit": 10}).json()
    assert [item["index"] for item in page["results"]] == list(range(5, 15))
    assert page["next_offset"] == 15 and page["total"] == 30
    by_index = {item["index"]: item for item in page["results"]}
    assert by_index[7]["status"] == "failed" and "must have 4 values" in by_index[7]["error"]["message"]
    assert by_index[12]["error"]["code"] == "invalid_input"
    expected = IRIS.target_names[IRIS.target[5]]
    assert by_index[5]["status"] == "succeeded" and by_index[5]["output"]["label"] == expected


def test_ndjson_streams_all_results_in_input_order(client):
    rows = [list(map(float, r)) for r in IRIS.data]
    job = batch(client, rows, Prefer="wait=30").json()
    with client.stream("GET", f"/v1/jobs/{job['id']}/results", headers={"Accept": "application/x-ndjson"}) as r:
        assert r.headers["content-type"].startswith("application/x-ndjson")
        items = [json.loads(line) for line in r.iter_lines() if line]
    assert [i["index"] for i in items] == list(range(150))
    accuracy = sum(i["output"]["class_index"] == t for i, t in zip(items, IRIS.target, strict=True)) / 150
    assert accuracy > 0.95


def test_non_finite_numbers_fail_their_row_by_name(client):
    """NaN and Infinity are not JSON, and 1e400 overflows a float: each fails its own row, clearly."""
    body = '{"inputs": [[5.1, 3.5, 1.4, 0.2], [NaN, 3.5, 1.4, 0.2], [5.1, Infinity, 1.4, 0.2], [5.1, 3.5, 1e400, 0.2]]}'
    response = client.post(
        "/v1/models/iris/batches", content=body, headers={"content-type": "application/json", "Prefer": "wait=30"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["progress"] == {"total": 4, "done": 4, "failed": 3}
    items = client.get(response.json()["urls"]["results"]).json()["results"]
    assert items[0]["status"] == "succeeded"
    messages = [item["error"]["message"] for item in items[1:]]
    assert messages == [
        "sepal_length must be a finite number, got NaN",
        "sepal_width must be a finite number, got Infinity",
        "petal_length must be a finite number, got Infinity",
    ]


@pytest.mark.parametrize("named", [False, True])
def test_a_row_no_float_can_hold_fails_alone_and_the_batch_finishes(client, named):
    """A 400-digit integer raised OverflowError in the worker, outside its row's error handling:
    the chunk died and the batch stayed ``running`` forever, its event stream never ending. (All
    rows positional take the fast path, which raised; a named row goes the row-by-row way.)"""
    huge = "9" * 400
    bad = f'{{"sepal_length": 5.1, "sepal_width": {huge}, "petal_length": 1.4, "petal_width": 0.2}}'
    rows = ["[5.1, 3.5, 1.4, 0.2]", bad if named else f"[{huge}, 3.5, 1.4, 0.2]", "[6.7, 3.0, 5.2, 2.3]"]
    response = client.post(
        "/v1/models/iris/batches",
        content='{"inputs": [' + ", ".join(rows) + "]}",
        headers={"content-type": "application/json", "Prefer": "wait=30"},
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded" and job["progress"] == {"total": 3, "done": 3, "failed": 1}
    items = client.get(job["urls"]["results"]).json()["results"]
    assert [item["status"] for item in items] == ["succeeded", "failed", "succeeded"]
    assert items[1]["error"]["code"] == "invalid_input" and "finite number" in items[1]["error"]["message"]
    with client.stream("GET", job["urls"]["events"]) as events:  # ends: the job is terminal
        assert '"status":"succeeded"' in "".join(events.iter_text()).replace(" ", "")


def test_a_batch_answers_exactly_what_single_jobs_answer(client):
    rows = [list(map(float, IRIS.data[i])) for i in (0, 60, 120, 75)]
    job = batch(client, rows, Prefer="wait=30").json()
    items = client.get(job["urls"]["results"]).json()["results"]
    for row, item in zip(rows, items, strict=True):
        single = client.post("/v1/models/iris/jobs", json={"input": row}, headers={"Prefer": "wait=10"}).json()
        assert item["output"] == single["output"]


def test_a_100k_row_batch_completes_in_order_with_monotone_progress(client):
    rows = [[round(float(v) + (i % 1000) * 1e-4, 6) for v in IRIS.data[i % 150]] for i in range(100_000)]
    job = batch(client, rows).json()
    progress = [job["progress"]["done"]]
    while job["status"] in ("queued", "running"):
        time.sleep(0.02)
        job = client.get(f"/v1/jobs/{job['id']}").json()
        progress.append(job["progress"]["done"])
    assert job["status"] == "succeeded" and job["progress"] == {"total": 100_000, "done": 100_000, "failed": 0}
    assert progress == sorted(progress)
    expected = served_iris().predict_proba(np.asarray(rows)).argmax(axis=1)
    with client.stream("GET", job["urls"]["results"], headers={"Accept": "application/x-ndjson"}) as r:
        items = [json.loads(line) for line in r.iter_lines() if line]
    assert [item["index"] for item in items] == list(range(100_000))
    assert [item["output"]["class_index"] for item in items] == expected.tolist()


def served_iris():
    manifest = json.loads((REPO_ROOT / "models/iris/1/manifest.json").read_text())
    return joblib.load(REPO_ROOT / "models/iris/1" / manifest["artifact"])


def test_canceling_a_batch_stops_its_remaining_chunks(client, stack):
    rows = [list(map(float, IRIS.data[i % 150])) for i in range(5000)]
    with consumption_paused(stack.redis.url, "worker@" + socket.gethostname()):
        job = batch(client, rows).json()
        canceled = client.post(f"/v1/jobs/{job['id']}/cancel").json()
    assert canceled["status"] == "canceled"
    client.post("/v1/models/iris/jobs", json={"input": rows[0]}, headers={"Prefer": "wait=10"})  # worker drained
    final = client.get(f"/v1/jobs/{job['id']}").json()
    assert final["status"] == "canceled" and final["progress"]["done"] == 0
    page = client.get(f"/v1/jobs/{job['id']}/results", params={"limit": 3}).json()
    assert {item["status"] for item in page["results"]} == {"pending"}


def test_batch_bad_requests(client):
    cases = [
        ({"inputs": []}, 422, "invalid_request"),
        ({"inputs": "rows"}, 422, "invalid_request"),
        ({"input": [1, 2, 3, 4]}, 422, "invalid_request"),
        ([[1, 2, 3, 4]], 422, "invalid_request"),
    ]
    for body, status, code in cases:
        response = client.post("/v1/models/iris/batches", json=body)
        assert (response.status_code, response.json()["code"]) == (status, code), body
    response = client.post("/v1/models/iris/batches", content="{", headers={"content-type": "application/json"})
    assert response.status_code == 400
    response = client.get(
        "/v1/jobs/" + client.post("/v1/models/iris/jobs", json={"input": [1, 2, 3, 4]}).json()["id"] + "/results"
    )
    assert response.status_code == 409 and response.json()["code"] == "not_a_batch"


def test_too_many_rows_is_refused(stack):
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        rows = [[1.0, 2.0, 3.0, 4.0]] * 100_001
        response = client.post("/v1/models/iris/batches", json={"inputs": rows})
        assert response.status_code == 413 and response.json()["code"] == "batch_too_large"


def test_idempotent_batches(client):
    rows = [[5.1, 3.5, 1.4, 0.2]] * 3
    first = batch(client, rows, **{"Idempotency-Key": "batch-1"}).json()
    again = batch(client, rows, **{"Idempotency-Key": "batch-1"})
    assert again.json()["id"] == first["id"] and again.headers["idempotent-replayed"] == "true"
    assert poll_until_terminal(client, first["id"])["progress"]["done"] == 3
