"""``GET /metrics`` on the API against the real stack: HTTP, jobs created, and the queue signals."""

import json
import socket
import time
import uuid

import httpx
import pytest
import redis

from api.queue_metrics import QueueSampler, message_created_s
from shared.jobs import job_id_created_at, new_job_id
from tests.api.helpers import consumption_paused, poll_until_terminal, submit
from tests.metrics_helpers import eventually, scrape

JOBS_ROUTE = "/v1/models/{model}/jobs"


def envelope(task_id) -> str:
    return json.dumps({"body": "W10=", "headers": {"id": task_id, "task": "mlqueue.predict"}, "properties": {}})


def test_message_age_comes_from_the_job_id_and_foreign_messages_are_refused():
    created = time.time() - 42
    job_id = new_job_id(created)
    assert message_created_s(envelope(job_id)) == pytest.approx(created, abs=0.001)
    assert message_created_s(envelope(f"{job_id}.17")) == pytest.approx(created, abs=0.001)  # a batch chunk
    for foreign in (envelope(str(uuid.uuid4())), envelope(None), envelope(7), "{}", "[]", "not json", b"\xff\x00"):
        assert message_created_s(foreign) is None


def test_oldest_age_skips_foreign_messages_and_dates_a_foreign_head_from_first_sight():
    sampler = QueueSampler()
    now = time.time()
    job = envelope(new_job_id(now - 30))
    assert sampler._oldest_age("cpu", [job, "junk"], now) == pytest.approx(30, abs=0.01)  # index -1 is the oldest
    webhook = envelope(str(uuid.uuid4()))
    assert sampler._oldest_age("webhooks", [webhook], now) == 0
    assert sampler._oldest_age("webhooks", [webhook], now + 5) == pytest.approx(5)
    assert sampler._oldest_age("webhooks", [envelope(str(uuid.uuid4()))], now + 6) == 0  # a new head


@pytest.mark.integration
def test_requests_latency_and_jobs_created_by_route_template(client, stack):
    url = f"{stack.api_url}/metrics"
    before = scrape(url)
    n = 3
    ids = []
    for _ in range(n):
        response = submit(client)
        assert response.status_code == 202
        ids.append(response.json()["id"])
    for job_id in ids:
        assert poll_until_terminal(client, job_id)["status"] == "succeeded"
    batch = client.post("/v1/models/iris/batches", json={"inputs": [[5.1, 3.5, 1.4, 0.2]] * 2})
    assert batch.status_code == 202
    assert client.get("/v1/no-such-path").status_code == 404

    after = scrape(url)

    def delta(name: str, **labels: str) -> float:
        return (after.get_value(name, **labels) or 0) - (before.get_value(name, **labels) or 0)

    assert delta("mlqueue_http_requests_total", method="POST", route=JOBS_ROUTE, status="202") >= n
    assert delta("mlqueue_http_request_duration_seconds_count", method="POST", route=JOBS_ROUTE) >= n
    assert after.get_value("mlqueue_http_request_duration_seconds_sum", method="POST", route=JOBS_ROUTE) > 0
    assert delta("mlqueue_http_requests_total", method="GET", route="/v1/jobs/{job_id}", status="200") >= n
    assert delta("mlqueue_http_requests_total", route="unmatched", status="404") >= 1
    assert delta("mlqueue_jobs_created_total", model="iris", kind="single") >= n
    assert delta("mlqueue_jobs_created_total", model="iris", kind="batch") >= 1
    # route labels are templates: no job id ever becomes a label value
    routes = {ls["route"] for ls in after.labelsets("mlqueue_http_requests_total")}
    assert not any(job_id in route for route in routes for job_id in ids), routes
    assert after.get_value("mlqueue_queue_metrics_up") == 1


@pytest.mark.integration
def test_queue_depth_and_oldest_age_while_jobs_wait(client, stack):
    url = f"{stack.api_url}/metrics"
    with consumption_paused(stack.redis.url, "worker@" + socket.gethostname()):
        ids = [submit(client).json()["id"] for _ in range(3)]
        time.sleep(0.2)
        samples = scrape(url)
        oldest = min(job_id_created_at(i) for i in ids)
        assert samples.get_value("mlqueue_queue_depth", queue="cpu") >= 3
        age = samples.get_value("mlqueue_queue_oldest_age_seconds", queue="cpu")
        assert 0.1 < age < time.time() - oldest + 60  # the oldest queued job (earlier tests' jobs ran already)
        assert samples.get_value("mlqueue_queue_consumers", queue="cpu") == 1  # paused, but alive
        assert samples.get_value("mlqueue_queue_waiting_without_consumer", queue="cpu") == 0
        assert samples.get_value("mlqueue_queue_depth", queue="webhooks") is not None  # every queue is reported
    for job_id in ids:
        assert poll_until_terminal(client, job_id)["status"] == "succeeded"

    def drained():
        after = scrape(url)
        assert after.get_value("mlqueue_queue_depth", queue="cpu") == 0
        assert after.get_value("mlqueue_queue_oldest_age_seconds", queue="cpu") == 0

    eventually(drained)


@pytest.mark.integration
@pytest.mark.fault
def test_jobs_waiting_without_a_live_consumer_and_redis_down(own_stack):
    url = f"{own_stack.api_url}/metrics"
    own_stack.stop("worker")
    # a foreign message in the Celery list: model queues are counted from their line, not the list
    redis.Redis.from_url(own_stack.redis.url).lpush("cpu", "not a kombu message")
    with httpx.Client(base_url=own_stack.api_url, timeout=30) as client:
        ids = [submit(client).json()["id"] for _ in range(2)]
    time.sleep(0.1)

    samples = scrape(url)
    depth = samples.get_value("mlqueue_queue_depth", queue="cpu")
    assert depth == 2
    assert samples.get_value("mlqueue_queue_consumers", queue="cpu") == 0
    assert samples.get_value("mlqueue_queue_waiting_without_consumer", queue="cpu") == depth
    assert samples.get_value("mlqueue_queue_oldest_age_seconds", queue="cpu") > 0
    assert samples.get_value("mlqueue_live_workers") == 0
    assert samples.get_value("mlqueue_queue_waiting_without_consumer", queue="gpu") == 0  # empty queue
    assert all(job_id_created_at(i) for i in ids)

    # With Redis down the endpoint still answers: HTTP metrics, no stale queue numbers.
    own_stack.redis.stop()
    started = time.monotonic()
    samples = scrape(url)
    assert time.monotonic() - started < 5
    assert samples.get_value("mlqueue_queue_metrics_up") == 0
    assert samples.get_value("mlqueue_queue_depth", queue="cpu") is None
    assert samples.get_value("mlqueue_http_requests_total", route="/metrics") >= 1
