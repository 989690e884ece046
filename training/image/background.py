"""Pictures that are none of the classes: the hidden background class, and what ``unknown`` is measured on."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

# Photo crops are background only for digits: for a folder of photos they could be a real class.
OOD_KINDS = ("uniform_noise", "gaussian_noise", "solid", "gradient", "shapes", "texture", "photo")
SYNTHETIC_OOD_KINDS = OOD_KINDS[:-1]


def ood_image(kind: str, rng: np.random.Generator, photo: np.ndarray | None = None) -> Image.Image:
    """A picture that is none of the classes. ``photo`` (an HxWx3 array) is cropped for ``kind="photo"``."""
    size = int(rng.integers(64, 257))
    arr: np.ndarray
    if kind == "uniform_noise":
        shape = (size, size, 3) if rng.random() < 0.7 else (size, size, 1)
        arr = np.broadcast_to(rng.integers(0, 256, shape), (size, size, 3))
    elif kind == "gaussian_noise":
        arr = rng.normal(rng.uniform(30, 225, 3), rng.uniform(10, 90), (size, size, 3))
    elif kind == "solid":
        arr = rng.integers(0, 256, 3) + rng.normal(0, rng.uniform(0, 4), (size, size, 3))
    elif kind == "gradient":
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        arr = a + (b - a) * (ramp(size, rng)[..., None] + 0.5)
    elif kind == "shapes":
        return _shapes(size, rng)
    elif kind == "texture":
        arr = _texture(size, rng)
    elif kind == "photo":
        if photo is None:
            raise ValueError("kind='photo' needs a photo to crop")
        side = int(rng.integers(48, min(photo.shape[:2]) + 1))
        top, left = rng.integers(0, photo.shape[0] - side + 1), rng.integers(0, photo.shape[1] - side + 1)
        arr = photo[top : top + side, left : left + side]
        arr = arr[:, ::-1] if rng.random() < 0.5 else arr
    else:
        raise ValueError(f"unknown OOD kind {kind!r}")
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _shapes(size: int, rng: np.random.Generator) -> Image.Image:
    """Filled ellipses, boxes and polygons on a plain or graded ground (filled: an outline ring is a 0)."""
    img = ood_image("gradient" if rng.random() < 0.5 else "solid", rng).resize((size, size))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 12))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        w, h = rng.uniform(0.1, 0.6, 2) * size
        x, y = rng.uniform(-0.1, 1.0, 2) * size
        shape = rng.integers(0, 3)
        if shape == 0:
            draw.ellipse((x, y, x + w, y + h), fill=colour)
        elif shape == 1:
            draw.rectangle((x, y, x + w, y + h), fill=colour)
        else:
            points = rng.uniform(0, 1, (int(rng.integers(3, 7)), 2)) * (w, h) + (x, y)
            draw.polygon([tuple(p) for p in points], fill=colour)
    return img


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """Stripes, a checkerboard or smooth coloured blobs (upsampled low-resolution noise)."""
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    style = rng.integers(0, 3)
    if style == 2:
        cells = int(rng.integers(2, 12))
        blobs = Image.fromarray(rng.integers(0, 256, (cells, cells, 3)).astype(np.uint8), "RGB")
        return np.asarray(blobs.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64)
    yy, xx = np.mgrid[0:size, 0:size] / size
    theta, cycles = rng.uniform(0, np.pi), rng.uniform(2, 20)
    u = np.cos(theta) * xx + np.sin(theta) * yy
    if style == 0:
        t = 0.5 + 0.5 * np.sin(2 * np.pi * cycles * u)
    else:
        v = -np.sin(theta) * xx + np.cos(theta) * yy
        t = ((np.floor(cycles * u) + np.floor(cycles * v)) % 2).astype(np.float64)
    return np.asarray(a + (b - a) * t[..., None], dtype=np.float64)


def ramp(size: int, rng: np.random.Generator) -> np.ndarray:
    """A linear ramp from -0.5 to 0.5 across the picture in a random direction."""
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(1, size - 1) - 0.5
    return np.asarray(np.cos(theta) * xx + np.sin(theta) * yy, dtype=np.float64)
