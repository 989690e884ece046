"""The shipped digits model through the worker runtime: right digits, "unknown" for everything else."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

from shared.errors import InvalidInput
from shared.images import preprocess_image
from shared.manifests import ModelRepository
from shared.settings import REPO_ROOT
from training.image.data import split_digits
from training.image.digit_pictures import render_digit
from worker.families.image import bucket_sizes
from worker.runtime import ModelRuntime

SIZE = 96


@pytest.fixture(scope="module")
def runtime() -> ModelRuntime:
    runtime = ModelRuntime(ModelRepository(REPO_ROOT / "models"))
    runtime.load_all()
    assert runtime.status().get("digits", {}).get("1", {}).get("status") == "loaded", runtime.status()
    return runtime


@pytest.fixture(scope="module")
def predictor(runtime):
    return runtime.get("digits", 1).predictor


def upload(img: Image.Image, fmt: str = "PNG") -> bytes:
    """What the API stores for an upload: the preprocessed RGB bytes."""
    buffer = io.BytesIO()
    img.convert("RGB").save(buffer, fmt)
    return preprocess_image(buffer.getvalue(), width=SIZE, height=SIZE)


def photo_like(seed: int) -> Image.Image:
    """Smooth colour blobs, a few shapes and sensor noise: image statistics, no digit."""
    rng = np.random.default_rng(seed)
    blobs = Image.fromarray(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)).resize((240, 180), Image.BICUBIC)
    arr = np.asarray(blobs, dtype=np.float64) + rng.normal(0, 6, (180, 240, 3))
    arr[40:120, 60:150] = arr[40:120, 60:150] * 0.5 + rng.uniform(0, 255, 3) * 0.5
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def test_digits() -> tuple[list[bytes], list[str]]:
    images, targets = split_digits()["test"]
    return [upload(render_digit(p)) for p in images[:40]], [str(t) for t in targets[:40]]


def test_held_out_digits_get_their_label(runtime, test_digits):
    raws, truth = test_digits
    outputs = [runtime.predict("digits", 1, raw)[0] for raw in raws]
    labels = [o["label"] for o in outputs]
    wrong = [(t, o) for t, o in zip(truth, labels, strict=True) if o not in (t, "unknown")]
    assert not wrong, wrong  # below the threshold it may abstain, above it must be right
    assert sum(t == o for t, o in zip(truth, labels, strict=True)) >= 0.9 * len(truth)


def test_a_photographed_looking_digit_as_jpeg(runtime):
    images, targets = split_digits()["test"]
    raw = upload(render_digit(images[0], size=400, rng=np.random.default_rng(5)), "JPEG")
    assert runtime.predict("digits", 1, raw)[0]["label"] in (str(targets[0]), "unknown")


@pytest.mark.parametrize(
    "image",
    [
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (120, 120, 3), dtype=np.uint8)),
        Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64), dtype=np.uint8)),
        photo_like(3),
        photo_like(4),
        Image.fromarray(load_sample_image("flower.jpg")),
        Image.fromarray(load_sample_image("china.jpg")),
        Image.new("RGB", (100, 100), (255, 255, 255)),  # blank paper
    ],
    ids=["rgb-noise", "gray-noise", "photo-like-1", "photo-like-2", "flower-photo", "china-photo", "blank"],
)
def test_not_a_digit_is_unknown(runtime, image):
    output, _ = runtime.predict("digits", 1, upload(image))
    assert output["label"] == "unknown", output
    assert output["confidence"] < 0.85


def test_output_shape_and_probabilities_sum_to_one(predictor, test_digits):
    for output in predictor.predict_batch([predictor.prepare(r) for r in test_digits[0][:5]]):
        assert set(output) == {"label", "confidence", "probabilities"}
        assert list(output["probabilities"]) == [str(d) for d in range(10)]
        assert abs(sum(output["probabilities"].values()) - 1) < 1e-4
        assert output["confidence"] == max(output["probabilities"].values())


def test_a_batch_answers_like_one_by_one(predictor, test_digits):
    noise = bytes(np.random.default_rng(9).integers(0, 256, SIZE * SIZE * 3, dtype=np.uint8))
    prepared = [predictor.prepare(r) for r in [*test_digits[0][:6], noise]]  # 7: padded to a bucket of 8
    batched = predictor.predict_batch(prepared)
    single = [predictor.predict_batch([p])[0] for p in prepared]
    assert [b["label"] for b in batched] == [s["label"] for s in single]
    for b, s in zip(batched, single, strict=True):
        for label, p in b["probabilities"].items():
            assert p == pytest.approx(s["probabilities"][label], abs=1e-4)


def test_more_than_the_largest_bucket_is_chunked(predictor, test_digits):
    prepared = [predictor.prepare(r) for r in test_digits[0]]  # 40 > 32
    outputs = predictor.predict_batch(prepared)
    assert len(outputs) == 40
    assert outputs[33]["label"] == predictor.predict_batch([prepared[33]])[0]["label"]


@pytest.mark.parametrize("raw", [b"", b"\0" * 100, b"\0" * (SIZE * SIZE * 3 + 1), "not bytes", [1, 2, 3]])
def test_wrong_input_is_invalid(predictor, raw):
    with pytest.raises(InvalidInput):
        predictor.prepare(raw)


def test_buckets():
    assert bucket_sizes(1) == [1]
    assert bucket_sizes(32) == [1, 2, 4, 8, 16, 32]
    assert bucket_sizes(33) == [1, 2, 4, 8, 16, 32, 64]
