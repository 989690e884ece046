"""(a) The raw in-process limit: the shipped models called directly, as the worker calls them.

``python -m bench.raw --out raw.json``: loads the model repository exactly like a worker
(``ModelRuntime(ModelRepository(dir)).load_all()``, the same thread caps), then times
``predictor.predict_batch`` on prepared inputs: single rows one at a time and batches; for images
also the whole path from PNG bytes (decode + resize + prepare + predict_batch, in batches of 32),
which is the raw rate the image target compares with. It runs as
a child of ``bench.run`` so the load generator never imports TensorFlow nor shares its threads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from shared.settings import get_settings
from worker.context import cap_threads

THREADS = cap_threads(get_settings())  # before numpy/TensorFlow are imported, as the worker does

import psutil  # noqa: E402

from bench.data import digit_pngs, iris_rows  # noqa: E402
from bench.stats import Json, summarize  # noqa: E402


def timed(call: Callable[[], object], items_per_call: int, seconds: float, max_calls: int) -> Json:
    """Call repeatedly for about ``seconds`` (at most ``max_calls`` calls) after one untimed call."""
    call()
    latencies: list[float] = []
    cpu = time.process_time()
    started = time.perf_counter()
    deadline = started + seconds
    while len(latencies) < max_calls and time.perf_counter() < deadline:
        t0 = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    items = len(latencies) * items_per_call
    cpu_ms = (time.process_time() - cpu) * 1000 / max(items, 1)  # all threads: TensorFlow uses both cores
    return summarize(latencies, elapsed, items=items, batch=items_per_call, cpu_ms_per_item=round(cpu_ms, 4))


def measure(seconds: float, with_image: bool) -> Json:
    from shared.images import preprocess_image
    from shared.manifests import ImageInput, ModelRepository
    from worker.runtime import ModelRuntime

    settings = get_settings()
    started = time.perf_counter()
    runtime = ModelRuntime(ModelRepository(settings.models_dir))
    runtime.load_all()
    load_s = time.perf_counter() - started
    loaded = sorted(f"{n}/{v}" for n, v in runtime.loaded)
    out: Json = {
        "threads": THREADS,
        "loaded": loaded,
        "failures": runtime.failures,
        "load_s": round(load_s, 1),
    }

    iris = runtime.get("iris", max(v for n, v in runtime.loaded if n == "iris")).predictor
    rows = [iris.prepare(r) for r in iris_rows(4096, seed=1)]
    it = iter(range(10**9))
    out["iris_x1"] = timed(lambda: iris.predict_batch([rows[next(it) % len(rows)]]), 1, seconds, 200_000)
    out["iris_b64"] = timed(
        lambda: iris.predict_batch(rows[(k := next(it) % 64) * 64 : k * 64 + 64]), 64, seconds, 50_000
    )

    if with_image and any(n == "digits" for n, _ in runtime.loaded):
        from worker.families.image import ImageClassifier

        digits = runtime.get("digits", max(v for n, v in runtime.loaded if n == "digits")).predictor
        size = digits.manifest.input
        if not isinstance(digits, ImageClassifier) or not isinstance(size, ImageInput):
            raise TypeError(f"digits: an image classifier expected, got {type(digits).__name__}")
        pngs = digit_pngs(256, seed=2)
        # What the API does per upload (decode + resize), for the CPU budget of an image job.
        out["png_decode"] = timed(
            lambda: preprocess_image(pngs[next(it) % 256], width=size.width, height=size.height), 1, seconds, 50_000
        )
        pixels = [preprocess_image(p, width=size.width, height=size.height) for p in pngs]
        images = [digits.prepare(p) for p in pixels]
        out["digits_x1"] = timed(lambda: digits.predict_batch([images[next(it) % 256]]), 1, seconds, 10_000)
        out["digits_b32"] = timed(
            lambda: digits.predict_batch(images[(k := next(it) % 8) * 32 : k * 32 + 32]), 32, seconds, 2_000
        )

        # The image target's raw rate: the whole per-image work, PNG decode + resize (API side) and
        # prepare + predict_batch (worker side), in batches of 32 in one process, no queue between.
        def decoded_batch() -> None:
            k = next(it) % 8
            batch = pngs[k * 32 : k * 32 + 32]
            digits.predict_batch(
                [digits.prepare(preprocess_image(p, width=size.width, height=size.height)) for p in batch]
            )

        out["digits_b32_decoded"] = timed(decoded_batch, 32, seconds, 2_000)
        import numpy as np

        # What a tutorial does per task: Keras ``model.predict`` on one image.
        one = [np.asarray(img, dtype=np.float32)[None] for img in images[:32]]
        out["digits_keras_predict_x1"] = timed(
            lambda: digits.model.predict(one[next(it) % 32], verbose=0), 1, seconds, 2_000
        )
    out["rss_mb"] = round(psutil.Process().memory_info().rss / 2**20, 1)
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--no-image", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = measure(args.seconds, not args.no_image)
    args.out.write_text(json.dumps(result, indent=2))
    os._exit(0)  # skip TensorFlow's slow interpreter teardown


if __name__ == "__main__":
    main(sys.argv[1:])
