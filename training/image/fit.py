"""Training the network, fitting its temperature, and the held-out metrics at the threshold."""

from __future__ import annotations

import logging
import time

import keras
import numpy as np

from training.image.data import Split

log = logging.getLogger(__name__)

BATCH_SIZE = 64
# The digits threshold: the lowest (on a 0.05 grid, rounded up) at which this share of every background
# kind's calibration pictures answers unknown; never below 2 / labels, never above the default.
CALIBRATION_UNKNOWN_RATE = 0.997


def fit(model: keras.Model, train: Split, epochs: int, augment_flip: bool, rng: np.random.Generator) -> None:
    steps = epochs * int(np.ceil(len(train.x) / BATCH_SIZE))
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=max(1, steps), alpha=0.05)
    model.compile(keras.optimizers.Adam(schedule), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = train.x
    for epoch in range(epochs):
        if augment_flip:  # photos of things, unlike digits, mean the same mirrored
            flip = rng.random(len(x)) < 0.5
            x = train.x.copy()
            x[flip] = x[flip, :, ::-1]
        started = time.perf_counter()
        history = model.fit(x, train.y, batch_size=BATCH_SIZE, epochs=1, shuffle=True, verbose=0)
        log.info(
            "training.image.epoch epoch=%d/%d loss=%.4f seconds=%.1f",
            epoch + 1,
            epochs,
            history.history["loss"][-1],
            time.perf_counter() - started,
        )


def predict_logits(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float64)


def id_metrics(probabilities: np.ndarray, y: np.ndarray, threshold: float, suffix: str = "") -> dict[str, float | None]:
    predicted, top = probabilities.argmax(axis=1), probabilities.max(axis=1)
    covered = top >= threshold
    return {
        f"test_accuracy{suffix}": round(float(np.mean(predicted == y)), 4),
        f"coverage_at_threshold{suffix}": round(float(np.mean(covered)), 4),
        f"accuracy_at_threshold{suffix}": round(float(np.mean(predicted[covered] == y[covered])), 4)
        if covered.any()
        else None,
    }


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T minimising validation negative log-likelihood of softmax(logits / T) (Guo et al. 2017)."""
    best_t, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.2), np.log(10.0), 300)):
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        nll = float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def calibrate_threshold(top_by_kind: dict[str, np.ndarray], n_labels: int, ceiling: float) -> float:
    """The lowest threshold keeping ``CALIBRATION_UNKNOWN_RATE`` of each kind's top probabilities below it.

    Lower than a fixed 0.85 means fewer right answers lost to "unknown"; fixed per kind, not overall,
    because the hardest kind (filled shapes) is what a user's non-digit is most likely to look like.
    """
    worst = max(float(np.quantile(top, CALIBRATION_UNKNOWN_RATE)) for top in top_by_kind.values())
    return float(np.clip(np.ceil(worst * 20 + 1e-9) / 20, 2 / n_labels, ceiling))
