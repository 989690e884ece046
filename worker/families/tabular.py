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

    def predict_batch(self, prepared: list[list[float]]) -> list[dict[str, Any]]:
        probabilities = self.model.predict_proba(np.asarray(prepared, dtype=np.float64))
        outputs = []
        for row in probabilities:
            index = int(np.argmax(row))
            outputs.append(
                {
                    "label": self.labels[index],
                    "class_index": index,
                    "probabilities": {label: round(float(p), 6) for label, p in zip(self.labels, row, strict=True)},
                }
            )
        return outputs

    def warm_up(self) -> None:
        self.predict_batch([[0.0] * len(self.manifest.feature_names)])
