"""One image-classifier version, start to end: data, network, training, calibration, metrics, card, files."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from shared.manifests import DEFAULT_THRESHOLD, ModelManifest, sha256_of
from training.common import write_version
from training.digits_eval import misses, rendering_matrix
from training.image import DIGITS_VERSION
from training.image.card import model_card
from training.image.data import DIGIT_LABELS, SEED, class_folders, digits_data, folder_data
from training.image.fit import (
    CALIBRATION_UNKNOWN_RATE,
    calibrate_threshold,
    fit,
    fit_temperature,
    id_metrics,
    predict_logits,
)
from training.image.network import build_scratch, build_transfer, export_model

log = logging.getLogger(__name__)

DIGITS_EPOCHS = 15
FOLDER_EPOCHS = {"scratch": 12, "transfer": 6}


def train(
    models_dir: Path,
    version: int | None = None,
    *,
    data_dir: Path | None = None,
    weights: Path | None = None,
    name: str | None = None,
    epochs: int | None = None,
    image_size: int = 96,
) -> ModelManifest:
    """Train, calibrate, measure and write ``models_dir/<name>/<version>/{model.keras,manifest.json}``."""
    started = time.perf_counter()
    version = version or (DIGITS_VERSION if data_dir is None else 1)
    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    threshold = DEFAULT_THRESHOLD
    labels = DIGIT_LABELS if data_dir is None else class_folders(data_dir)
    name = name or ("digits" if data_dir is None else Path(data_dir).resolve().name)
    transfer = weights is not None
    # built before the data is rendered, so a bad weights file fails in seconds
    outputs = len(labels) + 1  # + the hidden background class
    # polarity normalised for digits only: for photos of things, a bright centre is no reason to invert
    if weights is None:
        model = build_scratch(image_size, outputs, normalise_polarity=data_dir is None)
    else:
        model = build_transfer(image_size, outputs, weights)
    data = digits_data(image_size, rng) if data_dir is None else folder_data(data_dir, labels, image_size, rng)

    epochs = epochs or (DIGITS_EPOCHS if data_dir is None else FOLDER_EPOCHS["transfer" if transfer else "scratch"])
    log.info("training.image.start name=%s images=%d epochs=%d transfer=%s", name, len(data.train.x), epochs, transfer)
    fit(model, data.train, epochs, augment_flip=data_dir is not None, rng=rng)

    temperature = fit_temperature(predict_logits(model, data.val.x), data.val.y)
    final = export_model(model, temperature, len(labels))
    metrics: dict[str, Any] = {}  # the manifest's JSON metrics: numbers, None, nested dicts
    if data.calibration_ood:
        tops = {kind: predict_logits(final, x).max(axis=1) for kind, x in data.calibration_ood.items()}
        threshold = calibrate_threshold(tops, len(labels), DEFAULT_THRESHOLD)
        metrics["threshold_calibration"] = {
            "unknown_rate_per_kind": CALIBRATION_UNKNOWN_RATE,
            "pictures_per_kind": len(next(iter(tops.values()))),
            "top_probability_quantile": {
                k: round(float(np.quantile(t, CALIBRATION_UNKNOWN_RATE)), 4) for k, t in tops.items()
            },
        }
    for suffix, (x, y) in data.test.items():
        metrics.update(id_metrics(predict_logits(final, x), y, threshold, suffix))
    metrics["ood_unknown_rate"] = {
        kind: round(float(np.mean(predict_logits(final, x).max(axis=1) < threshold)), 4)
        for kind, x in data.test_ood.items()
    }
    metrics.update(
        temperature=round(temperature, 4),
        threshold=threshold,
        test_images=len(data.test[""][1]),
        ood_images_per_kind=len(next(iter(data.test_ood.values()))),
        train_images=len(data.train.x),
        epochs=epochs,
        train_seconds=round(time.perf_counter() - started, 1),
    )
    command = ["python -m training.image", f"--version {version}"]
    if data_dir is not None:
        command += [f"--data {data_dir}", f"--name {name}"] + ([f"--weights {weights}"] if transfer else [])
    if image_size != 96:
        command.append(f"--image-size {image_size}")
    fields = {
        "name": name,
        "version": version,
        "framework": "keras",
        "task": "classification",
        "queue": "gpu",
        "input": {"type": "image", "height": image_size, "width": image_size, "channels": 3},
        "labels": labels,
        "threshold": threshold,
        "batching": {"max_batch_size": 32, "max_delay_ms": 5},
        "metrics": metrics,
        "training_command": " ".join(command),
        "card": model_card(data_dir, transfer, data.kinds, metrics),
    }
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "model.keras"
        final.save(saved)
        if data_dir is None:  # what users get: uploads through preprocess_image and the worker family
            metrics["rendering_matrix"] = _rendering_matrix(fields, saved)
            metrics["train_seconds"] = round(time.perf_counter() - started, 1)
            fields["card"] = model_card(data_dir, transfer, data.kinds, metrics)

        def copy(path: Path) -> None:
            shutil.copyfile(saved, path)

        return write_version(models_dir, fields, "model.keras", copy)


def _rendering_matrix(fields: dict[str, Any], artifact: Path) -> dict[str, Any]:
    """``training.digits_eval`` over the saved file, loaded exactly as a worker loads it."""
    from worker.families.image import ImageClassifier  # the serving code, not a copy of it

    manifest = ModelManifest.model_validate({**fields, "artifact": artifact.name, "sha256": sha256_of(artifact)})
    result = rendering_matrix(ImageClassifier(manifest, artifact))
    log.info("training.image.rendering_matrix %s misses=%s", result, misses(result))
    return result
