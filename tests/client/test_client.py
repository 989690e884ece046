"""The Python client against the real stack: predict, submit/wait/cancel/events, batches and their
results, typed errors from the API's codes, and the async client doing the same."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest
from PIL import Image
from sklearn.datasets import load_digits, load_iris

import mlqueue
from mlqueue import AsyncClient, Client
from tests.api.helpers import SETOSA, consumption_paused
from training.image.digit_pictures import render_digit

pytestmark = pytest.mark.integration

IRIS = load_iris()
DIGITS = load_digits()


@pytest.fixture
def mlq(stack):
    with Client(stack.api_url) as c:
        yield c


def test_predict_returns_the_output_and_bad_input_raises_the_apis_code(mlq):
    assert mlq.predict("iris", SETOSA)["label"] == "setosa"
    assert mlq.predict("iris", [6.7, 3.0, 5.2, 2.3], wait=30)["label"] == "virginica"
    # Refused at submission: a 422 with the API's code, as a typed error.
    with pytest.raises(mlqueue.InvalidInput) as bad:
        mlq.predict("iris", [1, 2])
    assert bad.value.status == 422 and bad.value.code == "invalid_input" and "4 values" in bad.value.detail


def test_unknown_model_job_and_wrong_kind_are_typed_errors(mlq):
    with pytest.raises(mlqueue.NotFound) as e:
        mlq.predict("nosuchmodel", SETOSA)
    assert e.value.code == "model_not_found"
    with pytest.raises(mlqueue.NotFound) as e:
        mlq.job("01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert e.value.code == "job_not_found" and isinstance(e.value, mlqueue.ApiError)
    job = mlq.submit("iris", SETOSA, wait=10)
    with pytest.raises(mlqueue.Conflict) as e:
        list(job.results())
    assert e.value.code == "not_a_batch"
    with pytest.raises(mlqueue.Conflict) as e:
        job.cancel()
    assert e.value.code == "job_not_cancelable"


def test_submit_then_wait_refresh_and_events(mlq):
    job = mlq.submit("iris", [5.9, 3.0, 4.2, 1.5])
    assert job.status in ("queued", "running", "succeeded") and len(job.id) == 26
    assert job.wait(timeout=30) is job and job.succeeded and job.output["label"] == "versicolor"
    assert job.refresh().output["label"] == "versicolor"
    events = list(job.events())  # a finished job: its state, then the stream ends
    assert [e.type for e in events] == ["status"] and events[0].job["status"] == "succeeded"


def test_cancel_a_queued_job_and_a_deadline_makes_predict_raise_job_failed(stack, mlq):
    with consumption_paused(stack.redis.url, "worker@" + socket.gethostname()):
        job = mlq.submit("iris", [5.0, 3.4, 1.5, 0.21])
        assert job.cancel().status == "canceled" and job.done
        assert mlq.job(job.id).status == "canceled"
        with pytest.raises(mlqueue.WaitTimeout) as waited:
            mlq.predict("iris", [5.0, 3.4, 1.5, 0.22], wait=1.5)
        assert waited.value.job.status == "queued"
        assert mlq.cancel(waited.value.job.id).status == "canceled"
        with pytest.raises(mlqueue.JobFailed) as failed:
            mlq.predict("iris", SETOSA, wait=10, cancel_after="300ms")
    assert failed.value.job.status == "aborted" and failed.value.code == "deadline_exceeded"


def test_a_batch_streams_results_in_order_with_progress_events(mlq):
    rows = [list(map(float, r)) for r in IRIS.data] * 10  # 1,500 rows: several chunks
    rows[3] = [1.0]
    job = mlq.batch("iris", rows)
    assert job.kind == "batch" and job.progress.total == 1500
    seen = [(e.type, e.job["progress"]["done"]) for e in job.events()]
    assert seen[-1] == ("status", 1500) and job.status == "succeeded"
    items = list(job.results())
    assert [i["index"] for i in items] == list(range(1500))
    assert items[3]["status"] == "failed" and items[3]["error"]["code"] == "invalid_input"
    assert items[0]["output"]["label"] == "setosa" and items[149]["output"]["label"] == "virginica"


def test_image_predictions_from_a_path_or_bytes_and_an_image_batch(mlq, tmp_path):
    path = tmp_path / "digit.png"
    render_digit(DIGITS.images[1700]).save(path)
    expected = str(DIGITS.target[1700])
    assert mlq.predict_image("digits", path)["label"] == expected
    assert mlq.predict_image("digits", path.read_bytes())["label"] == expected
    Image.new("RGB", (30, 30), "white").save(tmp_path / "blank.png")
    job = mlq.batch("digits", [path, tmp_path / "blank.png"])
    labels = [i["output"]["label"] for i in job.results(timeout=60)]
    assert labels[0] == expected and len(labels) == 2
    # Priority as a form field of the upload, checked as the JSON body's is.
    assert mlq.submit_image("digits", path, wait=10, priority="high").priority == "high"
    assert mlq.batch("digits", [path], priority="low").priority == "low"
    assert mlq.predict_image("digits", path, priority="low")["label"] == expected
    with pytest.raises(mlqueue.InvalidInput) as bad:
        mlq.submit_image("digits", path, priority="urgent")
    assert bad.value.status == 422
    with pytest.raises(mlqueue.UnsupportedMediaType) as e:
        mlq.predict_image("digits", b"not an image")
    assert e.value.status == 415 and e.value.code == "unsupported_image_format"


def test_async_client_has_the_same_surface(stack):
    async def scenario() -> None:
        async with AsyncClient(stack.api_url) as mlq:
            assert (await mlq.predict("iris", SETOSA))["label"] == "setosa"
            assert {m["name"] for m in await mlq.models()} >= {"iris", "wine", "digits", "anomaly"}
            job = await mlq.submit("iris", [6.1, 2.8, 4.7, 1.2])
            await job.wait(30)
            assert job.output["label"] == "versicolor" and (await mlq.job(job.id)).succeeded
            batch = await mlq.batch("iris", [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
            types = [e.type async for e in batch.events()]
            assert types[-1] == "status" and batch.status == "succeeded"
            labels = [i["output"]["label"] async for i in batch.results()]
            assert labels == ["setosa", "virginica"]
            assert job.id in [j.id for j in await mlq.jobs(model="iris", limit=200)]
            with pytest.raises(mlqueue.NotFound):
                await mlq.predict("nosuchmodel", SETOSA)

    started = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - started < 60


class LosesFirstAnswer(httpx.HTTPTransport):
    """The first POST reaches the real API, which makes the job, but its answer never arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.lost: dict | None = None
        self.replayed: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and self.lost is None:
            response.read()
            self.lost = response.json()
            raise httpx.ReadError("connection reset after the request was sent", request=request)
        self.replayed.append(response.headers.get("idempotent-replayed"))
        return response


def test_a_submit_whose_answer_was_lost_is_retried_into_the_same_job(stack):
    transport = LosesFirstAnswer()
    with Client(stack.api_url, transport=transport) as mlq:
        job = mlq.submit("iris", [5.2, 3.3, 1.4, 0.25], wait=10)
    assert transport.lost is not None and job.id == transport.lost["id"]
    assert transport.replayed == ["true"] and job.output["label"] == "setosa"
