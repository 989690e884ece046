"""scikit-learn classifiers on named tabular features (iris, wine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np

from shared.manifests import ModelManifest, validate_features


class TabularClassifier:
    def __init__(self, manifest: ModelManifest, artifact: Path) -> None:
        self.manifest = manifest
        self.model = joblib.load(artifact)
        self.labels = manifest.labels or [str(c) for c in self.model.classes_]

    def prepare(self, raw_input: Any) -> list[float]:
        vector, _ = validate_features(self.manifest, raw_input)
        return vector

    def prepare_many(self, rows: list[Any]) -> list[list[float]] | None:
        """All rows at once when every one is a positional row of finite numbers, the common batch;
        None otherwise, and each row goes through ``prepare`` (which names what is wrong)."""
        width = len(self.manifest.feature_names)
        for row in rows:
            if type(row) is not list or len(row) != width:
                return None
            for value in row:
                if type(value) is not float and type(value) is not int:  # bool is refused, as in prepare
                    return None
        if not np.isfinite(np.asarray(rows, dtype=np.float64)).all():
            return None
        return rows

    def predict_batch(self, prepared: list[list[float]]) -> list[dict[str, Any]]:
        probabilities = np.round(self.model.predict_proba(np.asarray(prepared, dtype=np.float64)), 6)
        labels = self.labels
        return [
            {"label": labels[index], "class_index": index, "probabilities": dict(zip(labels, row, strict=True))}
            for index, row in zip(probabilities.argmax(axis=1).tolist(), probabilities.tolist(), strict=True)
        ]

    def warm_up(self) -> None:
        self.predict_batch([[0.0] * len(self.manifest.feature_names)])
