"""Model families: how an artifact of a given (framework, task) is loaded, warmed and run.

Each family is a ``Predictor``: ``prepare`` checks and converts one raw input (raising
``InvalidInput``), ``predict_batch`` runs many prepared inputs in one forward pass.

Optional, for batch chunks (``worker.chunks``): ``prepare_many(rows)`` validates a whole chunk at
once (None when any row needs the row-by-row path) and ``predict_json(prepared)`` returns each
output already as JSON text. The tabular family has both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from shared.fastjson import JsonValue
from shared.manifests import ModelManifest

# What a family's ``prepare`` makes of an input (a feature list, a pixel array): only that family's
# ``predict_batch`` reads it.
Prepared = Any


class Predictor(Protocol):
    manifest: ModelManifest

    def prepare(self, raw_input: JsonValue | bytes) -> Prepared: ...

    def predict_batch(self, prepared: list[Prepared]) -> list[dict[str, Any]]: ...

    def warm_up(self) -> None: ...


def load_predictor(manifest: ModelManifest, artifact: Path) -> Predictor:
    """Pick the family from the manifest. Imports are local so TensorFlow loads only when needed."""
    if manifest.framework == "sklearn" and manifest.task == "classification":
        from worker.families.tabular import TabularClassifier

        return TabularClassifier(manifest, artifact)
    if manifest.framework == "sklearn" and manifest.task == "anomaly":
        from worker.families.anomaly import AnomalyEnsemble

        return AnomalyEnsemble(manifest, artifact)
    if manifest.framework == "keras" and manifest.task == "classification":
        from worker.families.image import ImageClassifier

        return ImageClassifier(manifest, artifact)
    raise ValueError(f"no family for framework={manifest.framework} task={manifest.task}")
