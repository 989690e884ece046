"""Image jobs through HTTP: uploads in every format, digits recognised, non-digits unknown, bad files
refused with the right status, batches of images, and GPU-queue routing."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from training.image.digit_pictures import render_digit

pytestmark = pytest.mark.integration

DIGITS = load_digits()


def encoded(img: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt)
    return buffer.getvalue()


def digit_png(index: int, fmt: str = "PNG") -> tuple[bytes, str]:
    return encoded(render_digit(DIGITS.images[index]), fmt), str(DIGITS.target[index])


def upload(client, data: bytes, name: str = "x.png", model: str = "digits", **headers):
    return client.post(f"/v1/models/{model}/jobs", files={"file": (name, data)}, headers=headers)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_a_digit_in_any_format_is_recognised(client, fmt):
    data, label = digit_png(1700, fmt)
    response = upload(client, data, f"digit.{fmt.lower()}", Prefer="wait=30")
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert output["label"] == label and output["confidence"] >= 0.85
    assert abs(sum(output["probabilities"].values()) - 1) < 1e-3 and len(output["probabilities"]) == 10


def test_noise_and_a_photo_are_unknown(client):
    rng = np.random.default_rng(7)
    noise = Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    photo = Image.fromarray(np.dstack([np.tile(np.linspace(40, 220, 200), (150, 1))] * 3).astype(np.uint8))
    for img in (noise, photo):
        output = upload(client, encoded(img), Prefer="wait=30").json()["output"]
        assert output["label"] == "unknown" and output["confidence"] < 0.85


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"not an image at all", 415, "unsupported_image_format"),
        (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", 415, "unsupported_image_format"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 400, "corrupt_image"),
        (b"", 400, "empty_image"),
    ],
)
def test_bad_files_are_refused(client, data, status, code):
    response = upload(client, data)
    assert (response.status_code, response.json()["code"]) == (status, code), response.text


def test_truncated_and_bomb_images_are_refused(client):
    data, _ = digit_png(0)
    response = upload(client, data[: len(data) // 2])
    assert response.status_code == 400 and response.json()["code"] == "corrupt_image"
    big = Image.new("L", (9000, 9000))  # 81 Mpx of zeros: a tiny file, a huge decode
    buffer = io.BytesIO()
    big.save(buffer, "PNG", optimize=True)
    response = upload(client, buffer.getvalue())
    assert response.status_code == 413 and response.json()["code"] == "image_too_large"


def test_wrong_kinds_of_request_for_an_image_model(client):
    response = client.post("/v1/models/digits/jobs", json={"input": [1, 2, 3]})
    assert response.status_code == 415 and response.json()["code"] == "image_required"
    response = client.post("/v1/models/digits/jobs", files={"other": ("x.png", digit_png(0)[0])})
    assert response.status_code == 400 and response.json()["code"] == "invalid_multipart"
    response = client.post("/v1/models/digits/jobs", data={"version": "1"}, files={})
    assert response.status_code in (415, 422)
    response = upload(client, digit_png(0)[0], model="iris")
    assert response.status_code == 415 and response.json()["code"] == "json_required"
    response = client.post("/v1/models/digits/jobs", files={"file": ("x.png", digit_png(0)[0])}, data={"version": "1x"})
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"
    response = client.post(  # a name is an alias: one that was never set is unknown
        "/v1/models/digits/jobs", files={"file": ("x.png", digit_png(0)[0])}, data={"version": "one"}
    )
    assert response.status_code == 404 and response.json()["code"] == "alias_not_found"


def test_an_image_batch_keeps_order_and_fails_bad_files_alone(client):
    files = [("files", (f"{i}.png", digit_png(i)[0])) for i in (1710, 1720, 1730)]
    files.insert(1, ("files", ("bad.png", b"garbage")))
    response = client.post("/v1/models/digits/batches", files=files, headers={"Prefer": "wait=60"})
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["progress"] == {"total": 4, "done": 4, "failed": 1}
    items = client.get(f"/v1/jobs/{job['id']}/results").json()["results"]
    assert [i["index"] for i in items] == [0, 1, 2, 3]
    assert items[1]["error"]["code"] == "unsupported_image_format"
    expected = [str(DIGITS.target[i]) for i in (1710, 1720, 1730)]
    assert [items[i]["output"]["label"] for i in (0, 2, 3)] == expected


def test_image_jobs_go_to_a_gpu_worker_when_one_is_live(stack, client):
    data, label = digit_png(1740)
    cpu_job = upload(client, data, Prefer="wait=30").json()
    assert cpu_job["worker"].startswith("worker@")  # no gpu worker: the CPU worker runs it
    stack.start_worker("gpu0", env={"MLQUEUE_WORKER_QUEUES": "gpu"})
    try:
        stack.wait_for(lambda: "gpu" in client.get("/readyz").json()["queues"])
        gpu_job = upload(client, digit_png(1750)[0], Prefer="wait=30").json()
        assert gpu_job["worker"].startswith("gpu0@") and gpu_job["status"] == "succeeded"
        tabular = client.post(
            "/v1/models/iris/jobs", json={"input": [5.1, 3.5, 1.4, 0.2]}, headers={"Prefer": "wait=10"}
        ).json()
        assert tabular["worker"].startswith("worker@")  # tabular models stay on cpu
    finally:
        stack.stop("gpu0")
    assert json.dumps(cpu_job["output"])  # plain JSON
    assert cpu_job["output"]["label"] == label
