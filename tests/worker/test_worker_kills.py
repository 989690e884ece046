"""Fault test: SIGKILL the worker again and again under load; every accepted job still finishes.

Singles and a batch flow the whole time; the worker (same hostname each time, as a restarted
container has) is killed 10 times, at random moments, and restarted. Nothing may be lost, no
batch item counted twice, and what a dead worker held must run again within the documented bound
(``recover_after_s + 2 x sweep_interval_s``), long before kombu's visibility timeout (600 s here).
"""

import random
import shutil
import signal
import socket
import threading
import time

import httpx
import pytest
import redis

from devtools.processes import running_stack
from shared.presence import WorkerPresence
from shared.redis_keys import worker_key
from shared.settings import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.fault]

KILLS = 10
SWEEP_INTERVAL_S = 1.0
RECOVER_AFTER_S = 5.0
BOUND_S = RECOVER_AFTER_S + 2 * SWEEP_INTERVAL_S
BATCH_ROWS = 20_000


def iris_row(rng: random.Random) -> list[float]:
    return [round(rng.uniform(4.3, 7.9), 3), round(rng.uniform(2.0, 4.4), 3), round(rng.uniform(1.0, 6.9), 3), 1.0]


class Load:
    """Single jobs, each with its own input, sent until stopped; the ids the API accepted."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.accepted: list[str] = []
        self.refused: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(7)
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                response = client.post("/v1/models/iris/jobs", json={"input": iris_row(rng)})
                if response.status_code == 202:
                    self.accepted.append(response.json()["id"])
                else:
                    self.refused.append(response.status_code)
                time.sleep(0.01)

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)


def beats(r: redis.Redis, pid: int) -> bool:
    """Whether the worker process ``pid`` has written its presence: the killed one's outlives it by up
    to three heartbeats, and /readyz alone would count it (the next kill then hits a worker still
    booting, which holds nothing, and the test proves less)."""
    raw = r.get(worker_key(f"worker@{socket.gethostname()}"))
    presence = WorkerPresence.parse(raw) if raw else None
    return presence is not None and presence.pid == pid


def statuses(client: httpx.Client, ids: list[str]) -> dict[str, str]:
    return {job_id: client.get(f"/v1/jobs/{job_id}").json()["status"] for job_id in ids}


def test_ten_sigkills_under_load_lose_nothing_and_count_nothing_twice(tmp_path):
    models = tmp_path / "models"  # iris only: a restart takes seconds, not a TensorFlow import
    shutil.copytree(REPO_ROOT / "models" / "iris", models / "iris")
    settings = {
        "models_dir": str(models),
        "sweep_interval_s": str(SWEEP_INTERVAL_S),
        "recover_after_s": str(RECOVER_AFTER_S),
        "batch_chunk_rows": "250",
    }
    rng = random.Random(11)
    with running_stack(tmp_path, **settings) as stack, httpx.Client(base_url=stack.api_url, timeout=60) as client:
        rows = [iris_row(rng) for _ in range(BATCH_ROWS)]
        r = redis.Redis.from_url(stack.redis.url)
        with Load(stack.api_url) as load:
            batch = client.post("/v1/models/iris/batches", json={"inputs": rows}).json()
            for _ in range(KILLS):
                time.sleep(rng.uniform(0.5, 2.0))  # mid-work: jobs reserved, running and in the queue
                stack.stop("worker", signal.SIGKILL)
                time.sleep(rng.uniform(0.0, 1.0))
                worker = stack.start_worker()
                stack.wait_for(lambda: beats(r, worker.pid), timeout_s=120)  # noqa: B023 (called at once)
                stack.wait_ready(timeout_s=120)
        ready_at = time.monotonic()
        ids = [batch["id"], *load.accepted]
        pending = set(ids)
        while pending and time.monotonic() - ready_at < BOUND_S + 30:
            pending = {i for i, s in statuses(client, sorted(pending)).items() if s in ("queued", "running")}
            time.sleep(0.5)
        recovered_in = time.monotonic() - ready_at

        assert not load.refused, load.refused
        assert len(load.accepted) > 200
        assert not pending, f"{len(pending)} of {len(ids)} jobs never finished: {sorted(pending)[:5]}"
        # a job still running on the dead worker runs again within the bound (plus its queue's drain)
        assert recovered_in < BOUND_S + 30
        final = statuses(client, ids)
        assert set(final.values()) == {"succeeded"}, {s for s in final.values()}

        done = client.get(f"/v1/jobs/{batch['id']}").json()
        assert done["progress"] == {"total": BATCH_ROWS, "done": BATCH_ROWS, "failed": 0}
        lines = client.get(f"/v1/jobs/{batch['id']}/results", headers={"Accept": "application/x-ndjson"})
        indexes = [httpx.Response(200, content=line).json()["index"] for line in lines.text.splitlines()]
        assert indexes == list(range(BATCH_ROWS))  # every item once, in order
        # the kills did catch work in flight, and the sweeper (not kombu's timeout) sent it again
        log = (tmp_path / "worker.log").read_text()
        assert "job.recovered" in log
        print(  # the figures of a run, for the record (pytest -s)
            f"kills={KILLS} jobs={len(ids)} (+{BATCH_ROWS} batch items) lost={len(pending)} "
            f"recovered={log.count('job.recovered')} all_finished_within_s={recovered_in:.1f}"
        )
