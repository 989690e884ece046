"""The benchmark's inputs, generated once before anything is timed: iris rows and digit PNG uploads.

Every generated input is distinct from every other one of the same call, also as the result cache
sees it (iris: the JSON of the row; images: the decoded, resized pixels), and ``Pool`` hands each
workload a slice no other workload of that stack used: no timed job could be answered from the
cache even if it were on. Only the seed decides the inputs, so every system gets the same ones.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Sequence
from typing import Generic, TypeVar

MODEL_SIDE = 96  # the digits model's input (its manifest); what the cache key of an upload is made from

T = TypeVar("T")


def iris_rows(n: int, seed: int = 0) -> list[list[float]]:
    """``n`` plausible iris measurements (a real row plus noise), pairwise distinct."""
    from sklearn.datasets import load_iris

    data = load_iris().data
    rng = random.Random(seed)
    rows: list[list[float]] = []
    seen: set[tuple[float, ...]] = set()
    while len(rows) < n:
        base = data[rng.randrange(len(data))]
        row = [round(float(v) + rng.uniform(-0.3, 0.3), 6) for v in base]
        key = tuple(row)
        if key not in seen:  # a repeat is astronomically rare at 6 decimals, but cheap to rule out
            seen.add(key)
            rows.append(row)
    return rows


def digit_pngs(n: int, seed: int = 0, size: int = 128) -> list[bytes]:
    """``n`` PNG uploads of handwritten digits (scikit-learn's 8x8 scans drawn black on white at
    ``size`` px, placed a little differently each time); the API resizes them to the model's 96x96.
    Pairwise distinct after that resize (the API's own ``preprocess_image``: what its cache keys)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from shared.images import preprocess_image

    digits = load_digits().images
    rng = random.Random(seed)
    out: list[bytes] = []
    seen: set[bytes] = set()
    while len(out) < n:
        pixels = digits[rng.randrange(len(digits))]
        ink = Image.fromarray((255 - pixels * (255 / 16)).astype("uint8"), "L")
        glyph = ink.resize((int(size * 0.6), int(size * 0.75)), Image.Resampling.BICUBIC)
        canvas = Image.new("L", (size, size), 255)
        canvas.paste(glyph, (rng.randrange(size - glyph.width), rng.randrange(size - glyph.height)))
        buffer = io.BytesIO()
        canvas.convert("RGB").save(buffer, "PNG")
        png = buffer.getvalue()
        key = hashlib.sha256(preprocess_image(png, width=MODEL_SIDE, height=MODEL_SIDE)).digest()
        if key not in seen:  # the same scan at the same place: ~1 in 3 million draws, skipped
            seen.add(key)
            out.append(png)
    return out


class Pool(Generic[T]):
    """Hands out consecutive, non-overlapping slices of ``items``: one per workload (warm-ups too),
    so no input is sent twice to one stack. ``fresh()``: the same items from the start, for the
    next system (each runs on a Redis of its own)."""

    def __init__(self, items: Sequence[T], name: str = "inputs") -> None:
        self.items = items
        self.name = name
        self.used = 0

    def take(self, n: int) -> list[T]:
        if self.used + n > len(self.items):
            raise ValueError(
                f"{self.name}: {n} more wanted, {len(self.items) - self.used} of {len(self.items)} left "
                "(bench.session sizes the pools; a workload was added without growing them)"
            )
        out = list(self.items[self.used : self.used + n])
        self.used += n
        return out

    def fresh(self) -> Pool[T]:
        return Pool(self.items, self.name)
