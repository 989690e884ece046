"""Training the image classifier on a folder of classes, from scratch and from local MobileNetV2 weights."""

from __future__ import annotations

import io
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image, ImageDraw

from shared.images import preprocess_image
from shared.manifests import ModelManifest, ModelRepository, sha256_of
from training.image.background import OOD_KINDS, SYNTHETIC_OOD_KINDS, ood_image
from training.image.data import split_digits, to_model_input
from training.image.digit_pictures import render_digit
from training.image.fit import CALIBRATION_UNKNOWN_RATE, calibrate_threshold
from training.image.network import dark_on_light
from training.image.train import train
from worker.runtime import ModelRuntime

SIZE = 32


def cat(rng: np.random.Generator) -> Image.Image:
    """Warm horizontal stripes."""
    img = Image.new("RGB", (64, 48), (240, 200, 150))
    draw = ImageDraw.Draw(img)
    for y in range(int(rng.integers(0, 6)), 48, 8):
        draw.rectangle((0, y, 64, y + 3), fill=(180, int(rng.integers(40, 90)), 20))
    return img


def dog(rng: np.random.Generator) -> Image.Image:
    """A dark blue disc on grey."""
    img = Image.new("RGB", (48, 64), (200, 200, 210))
    x, y = rng.integers(5, 20, 2)
    ImageDraw.Draw(img).ellipse((x, y, x + 25, y + 25), fill=(20, 30, int(rng.integers(120, 200))))
    return img


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for name, draw in (("cats", cat), ("dogs", dog)):
        (root / name).mkdir()
        for i in range(12):
            draw(rng).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    (root / "cats" / "notes.txt").write_text("not an image, ignored")
    (root / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")  # skipped with a warning
    return root


def check_trained(models_dir: Path, manifest: ModelManifest, data_dir: Path) -> None:
    version_dir = models_dir / "pets" / "1"
    on_disk = ModelManifest.model_validate(json.loads((version_dir / "manifest.json").read_text()))
    assert on_disk == manifest
    assert manifest.labels == ["cats", "dogs"]
    assert manifest.framework == "keras" and manifest.task == "classification"
    assert manifest.input.width == SIZE and manifest.input.height == SIZE
    assert manifest.sha256 == sha256_of(version_dir / "model.keras")
    assert set(manifest.metrics["ood_unknown_rate"]) == set(SYNTHETIC_OOD_KINDS)

    runtime = ModelRuntime(ModelRepository(models_dir))
    runtime.load_all()
    assert runtime.status()["pets"]["1"]["status"] == "loaded", runtime.status()
    raw = preprocess_image((data_dir / "dogs" / "3.png").read_bytes(), width=SIZE, height=SIZE)
    output, _ = runtime.predict("pets", 1, raw)
    assert output["label"] in ("cats", "dogs", "unknown")
    assert abs(sum(output["probabilities"].values()) - 1) < 1e-4


@pytest.mark.slow  # trains a network: seconds
def test_train_from_scratch_on_a_folder(tmp_path: Path, data_dir: Path):
    manifest = train(tmp_path, data_dir=data_dir, name="pets", epochs=1, image_size=SIZE)
    check_trained(tmp_path, manifest, data_dir)
    assert "--data" in manifest.training_command and "--weights" not in manifest.training_command


@pytest.mark.slow  # trains a network: seconds
def test_train_with_local_mobilenet_weights(tmp_path: Path, data_dir: Path):
    weights = tmp_path / "w.weights.h5"
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3), alpha=0.35)
    base.save_weights(weights)
    manifest = train(tmp_path / "models", data_dir=data_dir, weights=weights, name="pets", epochs=1, image_size=SIZE)
    check_trained(tmp_path / "models", manifest, data_dir)
    assert "MobileNetV2" in manifest.card["algorithm"]


@pytest.mark.slow  # trains a network: seconds
def test_weights_that_are_not_mobilenet_are_refused(tmp_path: Path, data_dir: Path):
    weights = tmp_path / "other.weights.h5"
    other = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(4, 3)])
    other.save_weights(weights)
    with pytest.raises(ValueError, match="not a MobileNetV2"):
        train(tmp_path / "models", data_dir=data_dir, weights=weights, name="pets", epochs=1, image_size=SIZE)


def test_a_folder_with_one_class_is_refused(tmp_path: Path):
    (tmp_path / "data" / "only").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "only" / "a.png")
    with pytest.raises(ValueError, match="at least 2 class folders"):
        train(tmp_path / "models", data_dir=tmp_path / "data", epochs=1, image_size=SIZE)


def test_digit_rendering_goes_through_the_serving_pipeline():
    pixels = split_digits()["test"][0][0]
    rendered = render_digit(pixels)
    buffer = io.BytesIO()
    rendered.save(buffer, "PNG")
    served = np.frombuffer(preprocess_image(buffer.getvalue(), width=SIZE, height=SIZE), np.uint8)
    assert np.array_equal(to_model_input(rendered, SIZE).ravel(), served)


@pytest.mark.parametrize("kind", OOD_KINDS)
def test_ood_pictures_are_reproducible_from_their_seed(kind):
    photo = np.zeros((100, 120, 3), np.uint8)
    first = ood_image(kind, np.random.default_rng(3), photo)
    second = ood_image(kind, np.random.default_rng(3), photo)
    assert first.mode == "RGB" and np.array_equal(np.asarray(first), np.asarray(second))


def test_the_polarity_step_turns_light_ink_on_dark_into_dark_ink_on_light():
    inputs = keras.Input((SIZE, SIZE, 3))
    step = keras.Model(inputs, dark_on_light(inputs, SIZE))
    ink_on_paper = to_model_input(render_digit(split_digits()["test"][0][0]), SIZE).astype(np.float32)
    both = step.predict(np.stack([ink_on_paper, 255 - ink_on_paper]), verbose=0)
    assert np.abs(both - ink_on_paper).max() < 1.0  # the inverse is inverted back; ink on paper is left alone


def test_the_threshold_is_the_lowest_that_keeps_every_background_kind_unknown():
    rng = np.random.default_rng(0)
    tops = {"easy": rng.uniform(0.1, 0.2, 2000), "hard": rng.uniform(0.1, 0.42, 2000)}
    threshold = calibrate_threshold(tops, 10, ceiling=0.85)
    assert threshold == 0.45  # the hard kind's 99.7th percentile (~0.42), rounded up to a 0.05 step
    assert all(np.mean(t < threshold) >= CALIBRATION_UNKNOWN_RATE for t in tops.values())
    assert calibrate_threshold({"flat": np.full(10, 0.1)}, 10, ceiling=0.85) == 0.2  # never below 2 / labels
    assert calibrate_threshold({"digit-like": np.full(10, 0.99)}, 10, ceiling=0.85) == 0.85
