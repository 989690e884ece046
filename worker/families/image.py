"""Keras image classifiers (digits, cats/dogs): raw RGB bytes in, a label or "unknown" out.

Imported only inside a worker process after fork (``load_predictor``), never by the API: it
imports TensorFlow. The saved model already ends in a calibrated softmax over ``labels`` with its
out-of-distribution background folded in (see ``training/image/network.py``), so "unknown" here is just
the top probability falling below the manifest's threshold.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from shared.errors import InvalidInput
from shared.fastjson import JsonValue
from shared.manifests import DEFAULT_THRESHOLD, ImageInput, ModelManifest

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
_configured = False
_configure_lock = threading.Lock()


def configure_tensorflow() -> None:
    """Threads from the environment (``cap_threads``) and GPU memory growth, once per process.

    Both can only be set before TensorFlow initialises its runtime, so the first model to load
    does it and later ones (another version, another model) skip it.
    """
    global _configured
    with _configure_lock:
        if _configured:
            return
        _configured = True
        intra = os.environ.get("TF_NUM_INTRAOP_THREADS") or os.environ.get("OMP_NUM_THREADS")
        inter = os.environ.get("TF_NUM_INTEROP_THREADS")
        try:
            if intra:
                tf.config.threading.set_intra_op_parallelism_threads(int(intra))
            if inter:
                tf.config.threading.set_inter_op_parallelism_threads(int(inter))
            for gpu in tf.config.list_physical_devices("GPU"):
                # without growth one process grabs the whole card and a second model (or worker) OOMs
                tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError) as exc:  # already initialised by someone else: keep theirs
            log.warning("tensorflow.configure_skipped error=%s", exc)


def bucket_sizes(max_batch_size: int) -> list[int]:
    """1, 2, 4, … up to the first power of two ≥ ``max_batch_size``: the only batch shapes ever run."""
    sizes = [1]
    while sizes[-1] < max_batch_size:
        sizes.append(sizes[-1] * 2)
    return sizes


class ImageClassifier:
    def __init__(self, manifest: ModelManifest, artifact: Path) -> None:
        if not isinstance(manifest.input, ImageInput) or manifest.input.channels != 3:
            raise ValueError(f"{manifest.name}: an image classifier needs an RGB image input, got {manifest.input}")
        configure_tensorflow()
        self.manifest = manifest
        self.height, self.width = manifest.input.height, manifest.input.width
        self.labels = list(manifest.labels)
        self.threshold = manifest.threshold if manifest.threshold is not None else DEFAULT_THRESHOLD
        self.model = keras.saving.load_model(artifact, compile=False, safe_mode=True)
        expected = (None, self.height, self.width, 3)
        if tuple(self.model.input_shape) != expected or self.model.output_shape[-1] != len(self.labels):
            raise ValueError(
                f"{manifest.name}: model maps {self.model.input_shape} → {self.model.output_shape}, "
                f"manifest says {expected} → {len(self.labels)} labels"
            )
        self.buckets = bucket_sizes(manifest.batching.max_batch_size)
        # One graph for every batch size (the batch dimension is None), so nothing retraces; padding
        # to a few bucket sizes still bounds the shapes oneDNN/cuDNN pick and cache kernels for.
        self._forward = tf.function(
            self._call,
            input_signature=[tf.TensorSpec((None, self.height, self.width, 3), tf.uint8)],
            jit_compile=False,
            reduce_retracing=True,
        )

    def _call(self, images: tf.Tensor) -> tf.Tensor:
        # uint8 crosses to the device (a quarter of float32's bytes); the model rescales itself
        return self.model(tf.cast(images, tf.float32), training=False)

    def prepare(self, raw_input: JsonValue | bytes) -> np.ndarray:
        """The ``width * height * 3`` RGB bytes from ``shared.images.preprocess_image`` → (H, W, 3) uint8."""
        if not isinstance(raw_input, bytes | bytearray | memoryview):
            raise InvalidInput(f"model {self.manifest.name} takes image bytes, got {type(raw_input).__name__}")
        expected = self.height * self.width * 3
        if len(raw_input) != expected:
            raise InvalidInput(
                f"image for {self.manifest.name} must be {self.width}x{self.height} RGB "
                f"({expected} bytes after preprocessing), got {len(raw_input)} bytes"
            )
        return np.frombuffer(raw_input, dtype=np.uint8).reshape(self.height, self.width, 3)

    def predict_batch(self, prepared: list[np.ndarray]) -> list[dict[str, Any]]:
        """One forward pass per bucket-sized chunk (one in all unless more than the largest bucket)."""
        probabilities = []
        largest = self.buckets[-1]
        for start in range(0, len(prepared), largest):
            chunk = np.stack(prepared[start : start + largest])
            probabilities.append(self._run(chunk)[: len(chunk)])
        return [self._output(row) for row in np.concatenate(probabilities)]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        size = next(b for b in self.buckets if b >= len(batch))
        if size > len(batch):
            padding = np.zeros((size - len(batch), *batch.shape[1:]), dtype=np.uint8)
            batch = np.concatenate([batch, padding])
        return np.asarray(self._forward(tf.constant(batch)), dtype=np.float64)

    def _output(self, row: np.ndarray) -> dict[str, Any]:
        # float32 softmax can be off by a few ulps or hit -0.0; keep the published numbers a distribution
        row = np.clip(row, 0.0, None)
        row = row / row.sum()
        index = int(np.argmax(row))
        confidence = float(row[index])
        return {
            "label": self.labels[index] if confidence >= self.threshold else UNKNOWN,
            "confidence": round(confidence, 6),
            "probabilities": {label: round(float(p), 6) for label, p in zip(self.labels, row, strict=True)},
        }

    def warm_up(self) -> None:
        """Run every bucket once: the first call of each shape pays for kernel selection, not a user."""
        for size in self.buckets:
            self._run(np.zeros((size, self.height, self.width, 3), dtype=np.uint8))
