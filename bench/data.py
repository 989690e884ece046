"""The benchmark's inputs, generated once before anything is timed: iris rows and digit PNG uploads."""

from __future__ import annotations

import io
import random

IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def iris_rows(n: int, seed: int = 0) -> list[list[float]]:
    """``n`` plausible iris measurements (a real row plus noise): all distinct, so no two jobs share a cache entry."""
    from sklearn.datasets import load_iris

    data = load_iris().data
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        base = data[rng.randrange(len(data))]
        rows.append([round(float(v) + rng.uniform(-0.3, 0.3) + (i % 997) * 1e-6, 6) for v in base])
    return rows


def digit_pngs(n: int, seed: int = 0, size: int = 128) -> list[bytes]:
    """``n`` PNG uploads of handwritten digits (scikit-learn's 8x8 scans drawn black on white at
    ``size`` px, placed a little differently each time); the API resizes them to the model's 96x96."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits().images
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        pixels = digits[rng.randrange(len(digits))]
        ink = Image.fromarray((255 - pixels * (255 / 16)).astype("uint8"), "L")
        glyph = ink.resize((int(size * 0.6), int(size * 0.75)), Image.Resampling.BICUBIC)
        canvas = Image.new("L", (size, size), 255)
        canvas.paste(glyph, (rng.randrange(size - glyph.width), rng.randrange(size - glyph.height)))
        buffer = io.BytesIO()
        canvas.convert("RGB").save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out
