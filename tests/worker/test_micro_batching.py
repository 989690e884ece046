"""Micro-batching of forward passes (``worker.micro_batching``)."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.manifests import ModelManifest
from worker.micro_batching import Batcher

MANIFEST = ModelManifest(
    name="toy",
    version=1,
    framework="sklearn",
    task="classification",
    input={"type": "features", "features": [{"name": "x"}]},
    artifact="a",
    sha256="0",
)


class SlowDoubler:
    """A model whose forward pass takes 20 ms whatever the batch size, like a GPU."""

    manifest = MANIFEST

    def __init__(self) -> None:
        self.calls: list[list[float]] = []

    def predict_batch(self, prepared):
        self.calls.append(list(prepared))
        time.sleep(0.02)
        if any(x < 0 for x in prepared):
            raise ValueError("negative input")
        return [{"y": 2 * x} for x in prepared]


def test_concurrent_jobs_share_forward_passes_and_get_their_own_results():
    model = SlowDoubler()
    batcher = Batcher(model, max_batch_size=16, max_delay_ms=5)
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda x: batcher.run(float(x))[0]["y"], range(64)))
    assert results == [2.0 * x for x in range(64)]
    assert len(model.calls) < 64 / 2  # at least 2 jobs per pass on average
    assert max(len(c) for c in model.calls) <= 16


def test_a_lone_job_does_not_wait_for_the_delay():
    batcher = Batcher(SlowDoubler(), max_batch_size=16, max_delay_ms=500)
    started = time.perf_counter()
    batcher.run(1.0)
    assert time.perf_counter() - started < 0.25  # far below the 500 ms delay


def test_one_bad_input_fails_alone():
    batcher = Batcher(SlowDoubler(), max_batch_size=8, max_delay_ms=20)
    outcomes: dict[float, object] = {}

    def go(x: float) -> None:
        try:
            outcomes[x] = batcher.run(x)[0]["y"]
        except ValueError as exc:
            outcomes[x] = exc

    threads = [threading.Thread(target=go, args=(x,)) for x in (1.0, -1.0, 3.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes[1.0] == 2.0 and outcomes[3.0] == 6.0
    with pytest.raises(ValueError, match="negative"):
        raise outcomes[-1.0]


def test_an_idle_model_runs_a_lone_job_on_the_callers_thread():
    model = SlowDoubler()
    threads = []
    original = model.predict_batch

    def recording(prepared):
        threads.append(threading.current_thread())
        return original(prepared)

    model.predict_batch = recording
    batcher = Batcher(model, max_batch_size=8, max_delay_ms=0)
    assert batcher.run(2.0)[0] == {"y": 4.0}
    assert threads == [threading.current_thread()]  # no hand-off to the batcher thread
