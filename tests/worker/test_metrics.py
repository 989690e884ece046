"""The worker's own metrics port (``MLQUEUE_WORKER_METRICS_PORT``), scraped after real jobs."""

import httpx
import pytest

from devtools.processes import running_stack
from devtools.server_process import free_port
from tests.api.helpers import SETOSA, VIRGINICA
from tests.metrics_helpers import eventually, scrape

pytestmark = pytest.mark.integration


@pytest.fixture
def metrics_stack(tmp_path):
    port = free_port()
    with running_stack(tmp_path, worker_metrics_port=str(port), api_host="127.0.0.1") as s:
        yield s, f"http://127.0.0.1:{port}/metrics"


def test_worker_metrics_after_jobs_and_a_failing_batch_item(metrics_stack):
    stack, url = metrics_stack
    singles = 3
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        for body in ({"input": SETOSA}, {"input": VIRGINICA}, {"input": SETOSA}):
            done = client.post("/v1/models/iris/jobs", json=body, headers={"Prefer": "wait=30"}).json()
            assert done["status"] == "succeeded"
        rows = [[5.1, 3.5, 1.4, 0.2]] * 9 + [{"sepal_length": "x"}]  # one bad row: that item fails in the worker
        batch = client.post("/v1/models/iris/batches", json={"inputs": rows}, headers={"Prefer": "wait=30"}).json()
        assert batch["status"] == "succeeded" and batch["progress"]["failed"] == 1

    def check():
        s = scrape(url)
        assert s.get_value("mlqueue_worker_up") == 1
        assert s.get_value("mlqueue_worker_inference_seconds_count", model="iris", version="1") >= 1
        assert s.get_value("mlqueue_worker_inference_seconds_sum", model="iris", version="1") > 0
        assert s.get_value("mlqueue_worker_batch_size_count", model="iris") >= 2
        assert s.get_value("mlqueue_worker_batch_size_bucket", model="iris", le="+Inf") >= 2
        assert (
            s.get_value("mlqueue_worker_batch_size_sum", model="iris") >= singles + 9
        )  # bad rows never reach the model
        assert s.get_value("mlqueue_worker_model_load_seconds", model="iris", version="1") > 0
        assert s.get_value("mlqueue_worker_queue_wait_seconds_count", model="iris") >= singles + 1
        assert s.get_value("mlqueue_worker_jobs_total", model="iris", status="succeeded") >= singles + 1
        assert s.get_value("mlqueue_worker_failures_total", model="iris", code="invalid_input") == 1
        assert s.get_value("process_resident_memory_bytes") > 0
        return s

    eventually(check)
