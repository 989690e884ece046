"""An 8x8 scikit-learn digit drawn as an RGB picture, canonical or varied the way people post digits."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter
from scipy.ndimage import map_coordinates

from training.image.background import ramp


def render_digit(pixels: np.ndarray, *, size: int = 128, rng: np.random.Generator | None = None) -> Image.Image:
    """An 8x8 digit (values 0..16) as an RGB picture: black on white, centred, or randomly varied with ``rng``.

    Varied pictures cover how people and datasets post digits: either polarity (ink on paper, the
    dataset's and MNIST's white on black), the whole 8x8 frame upscaled blocky (nearest) or smooth,
    thin and thick strokes, small and off-centre digits, uneven light and paper grain.
    """
    if rng is not None and rng.random() < 0.6:
        pixels = _warp(pixels, rng)  # another writer's hand, in the dataset's own 8x8 form
    mask = Image.fromarray((np.asarray(pixels, dtype=np.float64) * (255 / 16)).astype(np.uint8), "L")
    if rng is None:
        return _compose(_placed(mask, size, 0.8, 1.0, 0.0, (0.0, 0.0), Image.Resampling.BICUBIC), None)
    smooth = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)[int(rng.integers(0, 2))]
    if rng.random() < 0.55:  # the whole frame, as the dataset stores it, with 0..3 cells of margin
        # blocky (nearest) half the time: the hardest upscale to read, and what a plain image editor does
        resample = Image.Resampling.NEAREST if rng.random() < 0.5 else smooth
        margin = int(rng.integers(0, 4)) if rng.random() < 0.5 else 0
        framed = Image.new("L", (8 + 2 * margin, 8 + 2 * margin), 0)
        framed.paste(mask, (margin, margin))
        canvas = framed.resize((size, size), resample)
        if rng.random() < 0.5:  # a slant, a squeeze or a slight turn of the whole frame
            canvas = _affine(canvas, rng)
    else:
        resample = Image.Resampling.NEAREST if rng.random() < 0.3 else smooth
        # small on a big picture, but not below ~12 pixels of digit on a small one
        scale = rng.uniform(0.3 if size >= 64 else 0.6, 1.0)
        aspect, angle = rng.uniform(0.75, 1.3), rng.uniform(-12, 12)
        shift = (rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5))  # fraction of the free margin
        canvas = _placed(mask, size, scale, aspect, angle, shift, resample)
    stroke = rng.random()
    if stroke < 0.2:  # thick pen: dilate the ink by about 1/30 of the picture
        canvas = canvas.filter(ImageFilter.MaxFilter(2 * max(1, size // 60) + 1))
    elif stroke < 0.35:  # thin pen
        canvas = canvas.filter(ImageFilter.MinFilter(2 * max(1, size // 90) + 1))
    if rng.random() < 0.3:
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5) * size / 96))
    return _compose(canvas, rng)


def _warp(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An elastic deformation of the 8x8 digit: a smooth random displacement of up to about a pixel."""
    coarse = rng.normal(0, 0.35, (2, 3, 3))
    field = [
        np.asarray(Image.fromarray(c.astype(np.float32), "F").resize((8, 8), Image.Resampling.BICUBIC)) for c in coarse
    ]
    yy, xx = np.mgrid[0:8, 0:8].astype(np.float64)
    warped = map_coordinates(
        np.asarray(pixels, dtype=np.float64), [yy + field[0], xx + field[1]], order=1, mode="constant"
    )
    return np.asarray(warped, dtype=np.float64)  # scipy is untyped: name what it returns


def _affine(canvas: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Rotate, shear and scale a square mask about its centre (black where nothing maps)."""
    angle, shear, scale = np.radians(rng.uniform(-10, 10)), rng.uniform(-0.25, 0.25), rng.uniform(0.85, 1.1)
    c, s = np.cos(angle), np.sin(angle)
    inverse = np.linalg.inv(np.array([[c, -s], [s, c]]) @ np.array([[1, shear], [0, 1]]) * scale)
    centre = np.array([canvas.width, canvas.height]) / 2
    offset = centre - inverse @ centre
    coefficients = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    return canvas.transform(canvas.size, Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR)


def _placed(
    mask: Image.Image,
    size: int,
    scale: float,
    aspect: float,
    angle: float,
    shift: tuple[float, float],
    resample: Image.Resampling,
) -> Image.Image:
    """The digit's ink mask resized, rotated and pasted on a size x size black canvas."""
    height = max(4, int(size * scale))
    width = min(size, max(4, int(height * 0.75 * aspect)))  # sklearn digits are drawn a little taller than wide
    mask = mask.resize((width, height), resample)
    if angle:
        mask = mask.rotate(angle, Image.Resampling.BILINEAR, expand=True)
    canvas = Image.new("L", (size, size), 0)
    free_x, free_y = max(0, size - mask.width), max(0, size - mask.height)
    canvas.paste(mask, (int(free_x * (0.5 + shift[0])), int(free_y * (0.5 + shift[1]))))
    return canvas


def _compose(canvas: Image.Image, rng: np.random.Generator | None) -> Image.Image:
    """Ink over paper through the mask ``canvas``: black on white, or random colours, light and grain."""
    size = canvas.width
    alpha = np.asarray(canvas, dtype=np.float64)[..., None] / 255
    if rng is None:
        return Image.fromarray(np.clip(255 * (1 - alpha), 0, 255).astype(np.uint8).repeat(3, axis=2), "RGB")
    dark_on_light = rng.random() < 0.5  # ink on paper, or the dataset's (and MNIST's) white on black
    if rng.random() < 0.4:  # pure black and white, as a dataset export is
        paper, ink = (np.full(3, 255.0), np.zeros(3)) if dark_on_light else (np.zeros(3), np.full(3, 255.0))
    else:
        paper_level = rng.uniform(165, 255) if dark_on_light else rng.uniform(0, 90)
        ink_level = rng.uniform(0, 90) if dark_on_light else rng.uniform(165, 255)
        paper = np.clip(paper_level + rng.normal(0, 15, 3), 0, 255)
        ink = np.clip(ink_level + rng.normal(0, 25, 3), 0, 255)
    background = np.broadcast_to(paper, (size, size, 3)).astype(np.float64)
    if rng.random() < 0.3:  # uneven lighting
        background = background + ramp(size, rng)[..., None] * rng.uniform(-40, 40)
    if rng.random() < 0.3:  # paper grain: smooth low-contrast blotches
        cells = int(rng.integers(3, 16))
        grain = Image.fromarray(rng.integers(0, 256, (cells, cells), dtype=np.uint8), "L")
        blotch = np.asarray(grain.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64) / 255 - 0.5
        background = background + blotch[..., None] * rng.uniform(5, 30)
    pixels_rgb = background * (1 - alpha) + ink * alpha
    if rng.random() < 0.5:
        pixels_rgb = pixels_rgb + rng.normal(0, rng.uniform(0, 12), pixels_rgb.shape)
    return Image.fromarray(np.clip(pixels_rgb, 0, 255).astype(np.uint8), "RGB")
