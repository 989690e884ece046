"""(d) BentoML serving the same Keras digits model with adaptive batching, as its docs show.

Run in its own virtualenv (``bench.run`` makes it: bentoml + tensorflow-cpu):
``bentoml serve service:Digits --port N`` from this folder, with ``DIGITS_MODEL`` set to the
``.keras`` artifact. One worker process; requests of one image each are merged by BentoML's
adaptive batcher into batches of up to 32.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar, cast

import bentoml
import numpy as np
from PIL.Image import Image

LABELS = [str(d) for d in range(10)]


F = TypeVar("F", bound=Callable[..., object])


def batched_api(fn: F) -> F:
    """``@bentoml.api`` with adaptive batching, typed at its edge (bentoml ships no types here)."""
    return cast(F, bentoml.api(batchable=True, max_batch_size=32, max_latency_ms=1000)(fn))


@bentoml.service(workers=1, traffic={"timeout": 60})
class Digits:
    def __init__(self) -> None:
        import keras

        self.model = keras.models.load_model(os.environ["DIGITS_MODEL"], compile=False)

    @batched_api
    def classify(self, images: list[Image]) -> list[dict[str, object]]:
        x = np.stack([np.asarray(im.convert("RGB").resize((96, 96)), dtype=np.float32) for im in images])
        probabilities = self.model.predict(x, verbose=0)
        return [{"label": LABELS[int(np.argmax(p))], "confidence": float(np.max(p))} for p in probabilities]
