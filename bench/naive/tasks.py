"""The tutorial Celery worker: ``celery -A bench.naive.tasks worker`` (default prefork pool, one child per core).

The models load when this module is imported, as the tutorials do, so the prefork parent loads
them once and the children inherit them. Keras is the exception: a TensorFlow runtime created
before ``fork()`` is not fork-safe (checked on this machine: a child forked after ``load_model``
hangs in its first ``predict``), so the image model loads lazily, on the first image task of each
child process. That is still the tutorial pattern (``model = None``, then ``if model is None:
model = load_model(...)``), and costs nothing after each child's first task.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from celery import Celery
from PIL import Image

MODELS = Path(__file__).resolve().parents[2] / "models"
REDIS_URL = os.environ.get("NAIVE_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("naive", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"], result_expires=3600)

iris_model = joblib.load(MODELS / "iris" / "1" / "model.joblib")
IRIS_LABELS = ["setosa", "versicolor", "virginica"]
DIGIT_LABELS = [str(d) for d in range(10)]
image_model = None


def get_image_model() -> Any:  # Any: a Keras model (keras ships no types here)
    global image_model
    if image_model is None:
        import keras

        image_model = keras.models.load_model(MODELS / "digits" / "1" / "model.keras", compile=False)
    return image_model


def task(fn: Callable[..., dict[str, object]]) -> Any:  # Any: a celery Task (celery ships no types)
    """``@app.task``, typed at its edge so the functions below keep their own types."""
    return app.task(fn)


@task
def predict_iris(features: list[float]) -> dict[str, object]:
    probabilities = iris_model.predict_proba([features])[0]
    index = int(np.argmax(probabilities))
    return {"label": IRIS_LABELS[index], "probabilities": dict(zip(IRIS_LABELS, probabilities.tolist(), strict=True))}


@task
def predict_digit(image_b64: str) -> dict[str, object]:
    image = Image.open(io.BytesIO(base64.b64decode(image_b64))).convert("RGB").resize((96, 96))
    x = np.asarray(image, dtype=np.float32)[None]
    probabilities = get_image_model().predict(x, verbose=0)[0]
    index = int(np.argmax(probabilities))
    return {"label": DIGIT_LABELS[index], "confidence": float(probabilities[index])}
