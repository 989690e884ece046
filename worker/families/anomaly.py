"""The anomaly-detection ensemble: IsolationForest + LocalOutlierFactor + per-feature z-score, 2 of 3 votes.

The artifact (written by ``training/anomaly.py``) is a plain dict of numpy arrays and scikit-learn
estimators, so loading it needs no training code:

    center, scale          per-feature mean and standard deviation (z = (x - center) / scale)
    pca                    whitening applied before the IsolationForest
    isolation_forest, lof  fitted detectors (LOF with novelty=True)
    score_calibration      per detector {"threshold", "width"}: votes and the 0–1 score
    min_votes              how many detectors must agree (2)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np

from shared.manifests import ModelManifest, validate_features

DETECTORS = ("isolation_forest", "local_outlier_factor", "zscore")
REQUIRED = ("feature_names", "center", "scale", "pca", "isolation_forest", "lof", "score_calibration", "min_votes")


class AnomalyEnsemble:
    def __init__(self, manifest: ModelManifest, artifact: Path) -> None:
        self.manifest = manifest
        model = joblib.load(artifact)
        if not isinstance(model, dict) or any(key not in model for key in REQUIRED):
            raise ValueError(f"{artifact} is not an anomaly ensemble (expected a dict with {', '.join(REQUIRED)})")
        if list(model["feature_names"]) != manifest.feature_names:
            # A manifest edited by hand (or a mismatched artifact) would silently score the wrong columns.
            raise ValueError(f"artifact features {model['feature_names']} differ from the manifest's")
        self.center = np.asarray(model["center"], dtype=np.float64)
        self.scale = np.asarray(model["scale"], dtype=np.float64)
        self.pca = model["pca"]
        self.isolation_forest = model["isolation_forest"]
        self.lof = model["lof"]
        self.min_votes = int(model["min_votes"])
        calibration = model["score_calibration"]
        self.thresholds = np.array([calibration[d]["threshold"] for d in DETECTORS], dtype=np.float64)
        self.widths = np.array([calibration[d]["width"] for d in DETECTORS], dtype=np.float64)

    def prepare(self, raw_input: Any) -> tuple[list[float], dict[str, Any]]:
        """Validated vector plus the echoed keys (``observation_id``), carried through the batch together."""
        return validate_features(self.manifest, raw_input)

    def outlier_scores(self, readings: np.ndarray) -> np.ndarray:
        """Raw scores, one column per detector in ``DETECTORS`` order, larger = more anomalous."""
        z = (readings - self.center) / self.scale
        return np.column_stack(
            [
                -self.isolation_forest.score_samples(self.pca.transform(z)),
                -self.lof.score_samples(z),
                np.abs(z).max(axis=1),
            ]
        )

    def predict_batch(self, prepared: list[tuple[list[float], dict[str, Any]]]) -> list[dict[str, Any]]:
        readings = np.asarray([vector for vector, _ in prepared], dtype=np.float64)
        scores = self.outlier_scores(readings)
        votes = scores > self.thresholds
        # Logistic squash around each threshold (0.5 there); tanh form cannot overflow for extreme inputs.
        squashed = 0.5 * (1.0 + np.tanh((scores - self.thresholds) / (2.0 * self.widths)))
        anomaly_scores = squashed.mean(axis=1)
        is_anomaly = votes.sum(axis=1) >= self.min_votes
        outputs = []
        for i, (_, echo) in enumerate(prepared):
            output: dict[str, Any] = {
                "is_anomaly": bool(is_anomaly[i]),
                "anomaly_score": round(float(anomaly_scores[i]), 6),
                "votes": {name: bool(votes[i, j]) for j, name in enumerate(DETECTORS)},
            }
            outputs.append({**echo, **output})
        return outputs

    def warm_up(self) -> None:
        # A healthy-looking row (the training mean) runs every detector once, paying first-call costs here.
        self.predict_batch([(self.center.tolist(), {})])
