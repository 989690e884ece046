"""Iris: StandardScaler + LogisticRegression on scikit-learn's bundled iris data.

python -m training.iris [--models-dir DIR] [--version N]
"""

from __future__ import annotations

from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from shared.manifests import ModelManifest
from training.common import cli, write_version

SEED = 42
FEATURES = [
    ("sepal_length", "sepal length in cm"),
    ("sepal_width", "sepal width in cm"),
    ("petal_length", "petal length in cm"),
    ("petal_width", "petal width in cm"),
]


def train(models_dir: Path, version: int = 1) -> ModelManifest:
    data = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.2, random_state=SEED, stratify=data.target
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=SEED))
    model.fit(x_train, y_train)
    predicted = model.predict(x_test)
    fields = {
        "name": "iris",
        "version": version,
        "framework": "sklearn",
        "task": "classification",
        "queue": "cpu",
        "input": {"type": "features", "features": [{"name": n, "description": d} for n, d in FEATURES]},
        "labels": [str(n) for n in data.target_names],
        "batching": {"max_batch_size": 256, "max_delay_ms": 1},
        "metrics": {
            "accuracy": round(float(accuracy_score(y_test, predicted)), 4),
            "f1_macro": round(float(f1_score(y_test, predicted, average="macro")), 4),
            "test_rows": len(y_test),
        },
        "training_command": f"python -m training.iris --version {version}",
        "card": {
            "summary": "Iris species from four flower measurements.",
            "data": "scikit-learn load_iris (150 rows), stratified 80/20 split, seed 42",
            "algorithm": "StandardScaler + LogisticRegression",
            "limitations": "Only the three iris species it was trained on; any input gets one of them.",
        },
    }
    return write_version(models_dir, fields, "model.joblib", lambda path: joblib.dump(model, path))


def main() -> None:
    cli(__doc__, "iris", train)


if __name__ == "__main__":
    main()
