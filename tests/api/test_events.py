"""Server-Sent Events: the transitions of a job, then the stream ends."""

import json
import socket
import threading

import httpx
import pytest

from tests.api.helpers import SETOSA, consumption_paused

pytestmark = pytest.mark.integration


def read_events(url: str, out: list, ready: threading.Event) -> None:
    with httpx.stream("GET", url, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        event = {}
        for line in response.iter_lines():
            ready.set()
            if line.startswith("event: "):
                event["event"] = line[7:]
            elif line.startswith("data: "):
                event["data"] = json.loads(line[6:])
            elif line == "" and event:
                out.append(event)
                event = {}


def test_sse_shows_queued_then_succeeded_and_ends(client, stack):
    events: list[dict] = []
    ready = threading.Event()
    with consumption_paused(stack.redis.url, "worker@" + socket.gethostname()):
        job = client.post("/v1/models/iris/jobs", json={"input": SETOSA}).json()
        reader = threading.Thread(
            target=read_events, args=(f"{stack.api_url}/v1/jobs/{job['id']}/events", events, ready)
        )
        reader.start()
        assert ready.wait(10)
    reader.join(30)
    assert not reader.is_alive(), "the stream did not end at the terminal state"
    statuses = [e["data"]["status"] for e in events if e["event"] == "status"]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded"
    assert events[-1]["data"]["output"]["label"] == "setosa"


def test_sse_shows_monotone_batch_progress(client, stack):
    rows = [[5.1, 3.5, 1.4, 0.2]] * 20_000
    events: list[dict] = []
    ready = threading.Event()
    with consumption_paused(stack.redis.url, "worker@" + socket.gethostname()):
        job = client.post("/v1/models/iris/batches", json={"inputs": rows}).json()
        reader = threading.Thread(
            target=read_events, args=(f"{stack.api_url}/v1/jobs/{job['id']}/events", events, ready)
        )
        reader.start()
        assert ready.wait(10)
    reader.join(60)
    done = [e["data"]["progress"]["done"] for e in events]
    assert done == sorted(done) and done[0] == 0 and done[-1] == 20_000
    assert any(e["event"] == "progress" for e in events)
    assert events[-1]["data"]["status"] == "succeeded"


def test_events_of_unknown_job_is_404(client):
    assert client.get("/v1/jobs/01JUNKNOWNJOB0000000000000/events").status_code == 404
