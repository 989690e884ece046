"""Steady client load for the multi-host and failover tests: distinct iris jobs until stopped."""

from __future__ import annotations

import random
import shutil
import threading
import time
from pathlib import Path

import httpx

from shared.settings import REPO_ROOT

TERMINAL = {"succeeded", "failed", "canceled", "aborted", "expired"}


def iris_models(tmp: Path) -> Path:
    """A models dir with iris only: a worker starts in seconds, not after a TensorFlow import."""
    models = tmp / "models"
    shutil.copytree(REPO_ROOT / "models" / "iris", models / "iris")
    return models


def iris_row(rng: random.Random) -> list[float]:
    return [round(rng.uniform(4.3, 7.9), 3), round(rng.uniform(2.0, 4.4), 3), round(rng.uniform(1.0, 6.9), 3), 1.0]


class Load:
    """Single jobs, each with its own input, sent until stopped by ``clients`` threads at once.
    Keeps every answer: the ids accepted (202) and when, and each refusal's status and Retry-After."""

    def __init__(self, url: str, pause_s: float = 0.01, seed: int = 7, clients: int = 1) -> None:
        self.url = url
        self.pause_s = pause_s
        self.seed = seed
        self.accepted: list[tuple[float, str]] = []  # (monotonic time, job id)
        self.refused: list[tuple[float, int, str | None]] = []  # (time, status, Retry-After)
        self.errors: list[tuple[float, str]] = []  # no HTTP answer at all
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(seed + i,), daemon=True) for i in range(clients)]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.post("/v1/models/iris/jobs", json={"input": iris_row(rng)})
                except httpx.HTTPError as exc:
                    self.errors.append((time.monotonic(), repr(exc)))
                else:
                    if response.status_code == 202:
                        self.accepted.append((time.monotonic(), response.json()["id"]))
                    else:
                        retry_after = response.headers.get("retry-after")
                        self.refused.append((time.monotonic(), response.status_code, retry_after))
                time.sleep(self.pause_s)

    @property
    def ids(self) -> list[str]:
        return [job_id for _, job_id in self.accepted]

    def accepted_since(self, t: float) -> int:
        return sum(1 for at, _ in self.accepted if at > t)

    def wait_accepted(self, count: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.accepted) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.accepted)} jobs accepted; refusals: {self.refused[-3:]}")
            time.sleep(0.05)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def records(client: httpx.Client, ids: list[str]) -> dict[str, dict | None]:
    """Each job's record as the API shows it; None for an id it does not know (404)."""
    out: dict[str, dict | None] = {}
    for job_id in ids:
        response = client.get(f"/v1/jobs/{job_id}")
        out[job_id] = None if response.status_code == 404 else response.json()
    return out


def wait_finished(client: httpx.Client, ids: list[str], timeout_s: float) -> dict[str, dict | None]:
    """Until every known job is terminal (or the time is up); the last records read."""
    deadline = time.monotonic() + timeout_s
    pending = list(ids)
    final: dict[str, dict | None] = {}
    while True:
        seen = records(client, pending)
        final.update(seen)
        pending = [i for i, r in seen.items() if r is not None and r["status"] not in TERMINAL]
        if not pending or time.monotonic() > deadline:
            return final
        time.sleep(0.3)
