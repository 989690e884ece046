"""Structured logs: JSON lines in containers, job and request ids carried from the API into the
worker, never the input itself."""

import json
import re

import httpx
import pytest

from devtools.processes import make_stack

pytestmark = pytest.mark.integration

SHUTDOWN = re.compile(r"^worker: (Warm|Cold) shutdown \(MainProcess\)$")
SECRET_VALUE = 5.123456789  # an input value that must never appear in a log


def test_json_logs_carry_the_request_id_into_the_worker_and_never_the_input(tmp_path):
    stack = make_stack(tmp_path, log_format="json")
    try:
        stack.start_worker()
        stack.start_api()
        stack.wait_ready()
        with httpx.Client(base_url=stack.api_url, timeout=30) as client:
            response = client.post(
                "/v1/models/iris/jobs",
                json={"input": [SECRET_VALUE, 3.5, 1.4, 0.2]},
                headers={"Prefer": "wait=10", "X-Request-ID": "req-abc-123"},
            )
            assert response.headers["x-request-id"] == "req-abc-123"
            job_id = response.json()["id"]
            generated = client.get("/healthz").headers["x-request-id"]
            assert len(generated) == 32
            assert (
                client.get("/healthz", headers={"X-Request-ID": "bad id <script>"}).headers["x-request-id"]
                != "bad id <script>"
            )
    finally:
        stack.stop_all()
    for name in ("api", "worker"):
        # Celery's signal handler prints its shutdown notice (logging is not signal-safe): the one exception
        lines = [line for line in stack.log(name).splitlines() if line.strip() and not SHUTDOWN.match(line)]
        records = [json.loads(line) for line in lines]  # every line is JSON
        assert all({"ts", "level", "logger", "event"} <= set(r) for r in records)
        assert str(SECRET_VALUE) not in stack.log(name)
    worker = [json.loads(line) for line in stack.log("worker").splitlines() if line.startswith("{")]
    mine = [r for r in worker if r.get("job_id") == job_id]
    events = [r["event"] for r in mine]
    assert "job.started model=iris version=1" in events and any(e.startswith("job.succeeded") for e in events)
    assert all(r.get("request_id") == "req-abc-123" for r in mine)
