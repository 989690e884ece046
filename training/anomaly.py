"""Anomaly ensemble: IsolationForest + LocalOutlierFactor + per-sensor z-score on synthetic pump-station sensors.

The data is one seeded, simulated series of 10,000 readings (one every 10 minutes, about 69 days) of
eight correlated sensors on a pump: most of them follow the pump's load, which has a day shift and a
night shift; temperature and humidity also follow the outdoor daily cycle. It is split in time:

    rows     0–3999  training: 1 % injected anomalies left in, unlabelled (real logs are never clean)
    rows  4000–5999  validation: 5 % injected anomalies, labelled; picks each detector's threshold
    rows  6000–9999  test: 5 % injected anomalies, labelled; the metrics in the manifest

Injected anomalies: spikes (one sensor jumps 5–9 standard deviations for 1–6 readings), drifts (one
sensor's offset grows from 2.5 to 5–8 standard deviations over 1–4 hours), dead sensors (a reading
stuck at 0 or at full scale: a broken or shorted current loop) and correlation breaks (a physical
fault where every sensor can stay inside its normal range: blockage, bearing wear, belt slip).

The artifact is a plain dict of scikit-learn and numpy objects (never a class defined here: the
worker must be able to load it without importing ``training``); ``worker.families.anomaly`` runs it.

python -m training.anomaly [--models-dir DIR] [--version N]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import f1_score, precision_score, recall_score
from sklearn.neighbors import LocalOutlierFactor

from shared.manifests import ModelManifest
from training.common import cli, write_version

SEED = 7
STEP_H = 1 / 6  # one reading every 10 minutes
TRAIN_ROWS, VALIDATION_ROWS, TEST_ROWS = 4000, 2000, 4000  # LOF keeps the training rows: keep it small
TRAIN_CONTAMINATION, EVAL_ANOMALY_RATE = 0.01, 0.05
MIN_VOTES = 2
# The z threshold is searched from the conventional 3 sigma up: below that a per-sensor z-score stops
# being "clearly outside the sensor's range" and just duplicates the multivariate detectors.
Z_GRID = np.arange(3.0, 6.01, 0.25)
# IsolationForest and LOF thresholds are searched among these quantiles of their training scores.
QUANTILE_GRID = np.linspace(0.90, 0.999, 100)
DETECTORS = ("isolation_forest", "local_outlier_factor", "zscore")

# name, description, full scale of its transmitter (what a shorted 4–20 mA loop reads)
SENSORS = [
    ("temperature_c", "motor housing temperature, °C", 150.0),
    ("pressure_bar", "discharge pressure, bar (gauge)", 10.0),
    ("vibration_mm_s", "bearing vibration velocity, mm/s RMS", 25.0),
    ("humidity_pct", "relative humidity in the pump house, %", 100.0),
    ("flow_rate_l_min", "flow rate, litres per minute", 300.0),
    ("power_kw", "electrical power drawn by the motor, kW", 40.0),
    ("current_a", "motor current, A (400 V three-phase)", 80.0),
    ("rotation_speed_rpm", "shaft speed, revolutions per minute", 3000.0),
]
NAMES = [name for name, _, _ in SENSORS]
COLUMN = {name: i for i, name in enumerate(NAMES)}
FULL_SCALE = np.array([full for _, _, full in SENSORS])
KINDS = ("spike", "drift", "dead_sensor", "correlation_break")


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """A slowly wandering disturbance (weather, demand), so no two days look the same."""
    noise = rng.normal(0.0, sd, n)
    out = np.empty(n)
    level = 0.0
    for i in range(n):
        level = phi * level + noise[i]
        out[i] = level
    return out


def simulate_normal(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` consecutive healthy readings, columns in ``NAMES`` order."""
    hour = (np.arange(n) * STEP_H) % 24
    ambient = 21 + 5 * np.sin(2 * np.pi * (hour - 9) / 24) + _ar1(rng, n, 0.995, 0.12)
    # Day shift 06:00–22:00 at high load, night at low load, with smooth ramps and demand noise.
    shift = 1 / (1 + np.exp(-(hour - 6) * 2)) - 1 / (1 + np.exp(-(hour - 22) * 2))
    load = np.clip(0.35 + 0.5 * shift + _ar1(rng, n, 0.97, 0.02), 0.15, 1.0)
    power = 3 + 17 * load + 0.05 * (ambient - 21) + rng.normal(0, 0.25, n)
    columns = {
        "temperature_c": ambient + 22 * load + rng.normal(0, 0.7, n),
        "pressure_bar": 1.5 + 4.5 * load + rng.normal(0, 0.08, n),
        "vibration_mm_s": 1.2 + 2.4 * load + np.abs(rng.normal(0, 0.12, n)),
        "humidity_pct": np.clip(55 - 1.8 * (ambient - 21) + _ar1(rng, n, 0.9, 1.2), 5, 99),
        "flow_rate_l_min": 40 + 160 * load + rng.normal(0, 3, n),
        "power_kw": power,
        # I = P / (sqrt(3) · V · power factor)
        "current_a": power * 1000 / (math.sqrt(3) * 400 * 0.85) + rng.normal(0, 0.25, n),
        "rotation_speed_rpm": 900 + 600 * load + rng.normal(0, 8, n),
    }
    return np.column_stack([columns[name] for name in NAMES])


def inject_anomalies(
    rng: np.random.Generator, readings: np.ndarray, rate: float, sd: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overwrite windows of ``readings`` until ``rate`` of the rows are anomalous → (readings, is_anomaly, kind)."""
    x = readings.copy()
    n = len(x)
    labels = np.zeros(n, dtype=bool)
    kinds = np.full(n, "", dtype=object)
    while labels.sum() < rate * n:
        kind = str(rng.choice(KINDS, p=[0.4, 0.2, 0.2, 0.2]))
        length = int(rng.integers(1, 7) if kind == "spike" else rng.integers(6, 25))
        start = int(rng.integers(0, n - length))
        if labels[max(0, start - 3) : start + length + 3].any():
            continue  # keep a gap between events so each window is one event
        window = slice(start, start + length)
        col = int(rng.integers(0, x.shape[1]))
        sign = rng.choice([-1.0, 1.0])
        if kind == "spike":
            x[window, col] += sign * rng.uniform(5, 9) * sd[col]
        elif kind == "drift":
            x[window, col] += sign * np.linspace(2.5, rng.uniform(5, 8), length) * sd[col]
        elif kind == "dead_sensor":
            x[window, col] = rng.choice([0.0, FULL_SCALE[col]])
        else:
            _break_correlation(rng, x, window)
        labels[window] = True
        kinds[window] = kind
    return x, labels, kinds


def _break_correlation(rng: np.random.Generator, x: np.ndarray, window: slice) -> None:
    fault = int(rng.integers(0, 3))
    if fault == 0:  # blockage downstream: flow falls, pressure rises, the motor works as before
        x[window, COLUMN["flow_rate_l_min"]] *= rng.uniform(0.35, 0.55)
        x[window, COLUMN["pressure_bar"]] *= rng.uniform(1.25, 1.4)
    elif fault == 1:  # bearing wear: vibration and heat at an ordinary load
        x[window, COLUMN["vibration_mm_s"]] *= rng.uniform(1.8, 2.5)
        x[window, COLUMN["temperature_c"]] += rng.uniform(8, 14)
    else:  # belt slip: the shaft slows and delivers less while the motor draws the same power
        x[window, COLUMN["rotation_speed_rpm"]] *= rng.uniform(0.7, 0.8)
        x[window, COLUMN["flow_rate_l_min"]] *= rng.uniform(0.75, 0.85)


def make_dataset(seed: int = SEED) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The three splits as (readings, is_anomaly, kind), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    clean = simulate_normal(rng, TRAIN_ROWS + VALIDATION_ROWS + TEST_ROWS)
    train, validation, test = np.split(clean, [TRAIN_ROWS, TRAIN_ROWS + VALIDATION_ROWS])
    sd = train.std(axis=0)  # anomaly sizes are in units of each sensor's healthy spread
    return {
        "train": inject_anomalies(rng, train, TRAIN_CONTAMINATION, sd),
        "validation": inject_anomalies(rng, validation, EVAL_ANOMALY_RATE, sd),
        "test": inject_anomalies(rng, test, EVAL_ANOMALY_RATE, sd),
    }


def outlier_scores(model: dict[str, Any], readings: np.ndarray) -> dict[str, np.ndarray]:
    """Each detector's raw outlier score, larger = more anomalous (the worker computes the same)."""
    z = (readings - model["center"]) / model["scale"]
    return {
        # PCA whitening first: healthy readings lie along one load-driven direction, and axis-parallel
        # isolation trees only see a deviation across it once the thin directions are scaled up.
        "isolation_forest": -model["isolation_forest"].score_samples(model["pca"].transform(z)),
        "local_outlier_factor": -model["lof"].score_samples(z),
        "zscore": np.abs(z).max(axis=1),
    }


def _best_threshold(candidates: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> float:
    f1s = [f1_score(labels, scores > c) for c in candidates]
    return float(candidates[int(np.argmax(f1s))])


def _quality(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        "precision": round(float(precision_score(labels, predicted, zero_division=0)), 4),
        "recall": round(float(recall_score(labels, predicted, zero_division=0)), 4),
        "f1": round(float(f1_score(labels, predicted, zero_division=0)), 4),
    }


def fit(data: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit on the training split, choose thresholds on validation, measure on test → (artifact dict, metrics)."""
    x_train = data["train"][0]
    center, scale = x_train.mean(axis=0), x_train.std(axis=0)
    z_train = (x_train - center) / scale
    pca = PCA(whiten=True, random_state=SEED).fit(z_train)
    model: dict[str, Any] = {
        "format": "mlqueue.anomaly_ensemble/1",
        "feature_names": list(NAMES),
        "center": center,
        "scale": scale,
        "pca": pca,
        "isolation_forest": IsolationForest(n_estimators=200, random_state=SEED).fit(pca.transform(z_train)),
        "lof": LocalOutlierFactor(n_neighbors=35, novelty=True).fit(z_train),
        "min_votes": MIN_VOTES,
    }

    train_scores = outlier_scores(model, x_train)
    x_val, y_val, _ = data["validation"]
    val_scores = outlier_scores(model, x_val)
    calibration: dict[str, dict[str, float]] = {}
    for name in DETECTORS:
        grid = Z_GRID if name == "zscore" else np.quantile(train_scores[name], QUANTILE_GRID)
        threshold = _best_threshold(grid, val_scores[name], y_val)
        # Logistic squash: 0.5 at the threshold, 0.05 at the median training reading (see the card).
        width = (threshold - float(np.median(train_scores[name]))) / math.log(19)
        calibration[name] = {"threshold": round(threshold, 6), "width": round(width, 6)}
    model["score_calibration"] = calibration
    model["z_threshold"] = calibration["zscore"]["threshold"]

    x_test, y_test, kind_test = data["test"]
    test_scores = outlier_scores(model, x_test)
    votes = {name: test_scores[name] > calibration[name]["threshold"] for name in DETECTORS}
    ensemble = np.sum(list(votes.values()), axis=0) >= MIN_VOTES
    metrics = {
        **_quality(y_test, ensemble),
        "false_positive_rate": round(float(ensemble[~y_test].mean()), 4),
        "test_rows": len(y_test),
        "test_anomalies": int(y_test.sum()),
        "detectors": {name: _quality(y_test, v) for name, v in votes.items()},
        "recall_by_kind": {kind: round(float(ensemble[kind_test == kind].mean()), 4) for kind in KINDS},
        "thresholds": {name: c["threshold"] for name, c in calibration.items()},
    }
    return model, metrics


def _round3(value: float) -> str:
    """Three significant figures without scientific notation: 1034.2 → "1030"."""
    return f"{float(f'{value:.3g}'):g}"


def train(models_dir: Path, version: int = 1) -> ModelManifest:
    data = make_dataset(SEED)
    model, metrics = fit(data)
    # Publish each sensor's healthy range (1st–99th percentile of clean training rows) so clients can sanity-check.
    x_train, y_train, _ = data["train"]
    low, high = np.percentile(x_train[~y_train], [1, 99], axis=0)
    features = [
        {"name": name, "description": f"{text}; healthy readings about {_round3(lo)}–{_round3(hi)}"}
        for (name, text, _), lo, hi in zip(SENSORS, low, high, strict=True)
    ]
    fields = {
        "name": "anomaly",
        "version": version,
        "framework": "sklearn",
        "task": "anomaly",
        "queue": "cpu",
        "input": {
            "type": "features",
            "features": features,
            "echo": ["observation_id"],
        },
        "labels": [],
        "batching": {"max_batch_size": 256, "max_delay_ms": 1},
        "metrics": metrics,
        "training_command": f"python -m training.anomaly --version {version}",
        "card": {
            "summary": (
                "Flags a reading of eight pump-station sensors as anomalous when at least 2 of 3 detectors agree "
                "(IsolationForest, LocalOutlierFactor, per-sensor z-score)."
            ),
            "data": (
                f"Simulated, seed {SEED}: {TRAIN_ROWS + VALIDATION_ROWS + TEST_ROWS} readings 10 minutes apart, "
                "load-driven pump sensors with day/night shifts and an outdoor daily cycle; split in time into "
                f"training ({TRAIN_ROWS}, {TRAIN_CONTAMINATION:.0%} unlabelled anomalies), validation "
                f"({VALIDATION_ROWS}) and test ({TEST_ROWS}), each with {EVAL_ANOMALY_RATE:.0%} injected anomalies: "
                "spikes, drifts, dead sensors (stuck at 0 or full scale) and correlation breaks "
                "(blockage, bearing wear, belt slip)."
            ),
            "algorithm": (
                "Readings are standardised with the training mean and standard deviation. IsolationForest "
                "(200 trees) runs on PCA-whitened standardised readings, LocalOutlierFactor (novelty, 35 neighbours) "
                "on the standardised readings, and the z-score detector takes the largest |z| over the sensors. "
                "Each detector's threshold maximises its own F1 on the validation split (IsolationForest and LOF "
                "among the 90th–99.9th percentiles of their training scores, z among 3.0–6.0)."
            ),
            "score": (
                "anomaly_score is the mean of the three detectors' squashed outlier scores, each "
                "1 / (1 + exp(-(s - threshold) / width)): 0.5 exactly at that detector's threshold, 0.05 at the "
                "median training reading, near 1 far beyond it. It ranks readings; is_anomaly is the 2-of-3 vote, "
                "so a score just above or below 0.5 does not by itself decide it."
            ),
            "limitations": (
                "Trained on simulated data of one simulated pump: it knows nothing of a real plant until retrained "
                "on its readings. It judges one reading at a time with no memory, so a sensor frozen at a "
                "plausible value, or a drift still inside the healthy range, goes unseen. Correlation breaks are "
                "the hardest kind (see recall_by_kind). Units and ranges must match the feature descriptions."
            ),
        },
    }
    return write_version(models_dir, fields, "model.joblib", lambda path: joblib.dump(model, path, compress=3))


def main() -> None:
    cli(__doc__, "anomaly", train)


if __name__ == "__main__":
    main()
