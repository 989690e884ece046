"""Cancel-After deadlines: aborted if not started in time, canceled if still running."""

import socket
import time

import pytest

from tests.api.helpers import SETOSA, consumption_paused

pytestmark = pytest.mark.integration


def test_a_job_not_started_before_its_deadline_is_aborted(client, stack):
    with consumption_paused(stack.redis.url, "worker@" + socket.gethostname()):
        job = client.post("/v1/models/iris/jobs", json={"input": SETOSA}, headers={"Cancel-After": "300ms"}).json()
        assert job["status"] == "queued" and job["deadline_at"]
        time.sleep(0.5)
        read = client.get(f"/v1/jobs/{job['id']}").json()
        assert read["status"] == "aborted" and read["error"]["code"] == "deadline_exceeded"
    # the worker receives the message afterwards and leaves the job aborted
    client.post("/v1/models/iris/jobs", json={"input": SETOSA}, headers={"Prefer": "wait=10"})
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "aborted"


def test_wait_reports_the_deadline_when_it_passes(client, stack):
    with consumption_paused(stack.redis.url, "worker@" + socket.gethostname()):
        started = time.monotonic()
        response = client.post(
            "/v1/models/iris/jobs", json={"input": SETOSA}, headers={"Cancel-After": "500ms", "Prefer": "wait=10"}
        )
        assert time.monotonic() - started < 5
    assert response.status_code == 200 and response.json()["status"] == "aborted"


def test_a_job_with_a_generous_deadline_runs(client):
    response = client.post(
        "/v1/models/iris/jobs", json={"input": SETOSA}, headers={"Cancel-After": "30s", "Prefer": "wait=10"}
    )
    assert response.json()["status"] == "succeeded"


@pytest.mark.parametrize("value", ["soon", "-5s", "0", "10 parsecs", ""])
def test_bad_cancel_after_is_a_400(client, value):
    response = client.post("/v1/models/iris/jobs", json={"input": SETOSA}, headers={"Cancel-After": value})
    assert response.status_code == 400 and response.json()["code"] == "invalid_header"
