"""Image classifier: a small inverted-residual CNN that says "unknown" for what it was not trained on.

python -m training.image [--data DIR] [--weights FILE] [--name NAME] [--epochs N] [--version N] [--models-dir DIR]

Without ``--data`` it trains the shipped ``digits`` model on scikit-learn's bundled 8x8 digits,
rendered as RGB pictures (varied ink, paper, size, position, blur, noise, JPEG). With
``--data DIR`` it trains on ``DIR/<class>/*.jpg|jpeg|png``; ``--weights`` names a local ImageNet
MobileNetV2 ``include_top=False`` weights file to use as a frozen base (transfer learning).

"Unknown": the network has one extra hidden *background* class, trained on synthetic
out-of-distribution pictures (noise, solid colours, gradients, shapes, textures, photo crops).
The saved model ends in fixed layers that divide the logits by a temperature fitted on a
validation split, take the softmax and spread the background probability evenly over the real
labels, so its output is a calibrated distribution over ``labels`` only: an out-of-distribution
picture comes out near-uniform, below the manifest's threshold, and the worker needs no extra logic.
Every picture, synthetic or from disk, goes through ``shared.images.preprocess_image``, as uploads do.

The digits model is also measured on ``training.digits_eval``'s rendering matrix (the last 200
sklearn digits, never trained on, posted in the renderings users send and read by the worker's own
code); the result goes into the manifest's metrics and the model card.
"""

from __future__ import annotations

import argparse
import io
import logging
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers
from PIL import Image, ImageDraw, ImageFilter
from scipy.ndimage import map_coordinates
from sklearn.datasets import load_digits, load_sample_image
from sklearn.model_selection import train_test_split

from shared.images import preprocess_image
from shared.manifests import DEFAULT_THRESHOLD, ModelManifest, sha256_of
from training.common import MODELS_DIR_HELP, add_publish_argument, output_dir, publish_if_asked, write_version
from training.digits_eval import HOLDOUT, misses, rendering_matrix

log = logging.getLogger(__name__)

SEED = 42
DIGITS_EPOCHS = 14
DIGITS_DRAWS = 6  # renderings of each training digit: the canonical one and 5 varied
DIGITS_VERSION = 2  # what ``python -m training`` ships; v1 (before the rendering matrix) is kept as it was
FOLDER_EPOCHS = {"scratch": 12, "transfer": 6}
BATCH_SIZE = 64
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
# Photo crops are background only for digits: for a folder of photos they could be a real class.
OOD_KINDS = ("uniform_noise", "gaussian_noise", "solid", "gradient", "shapes", "texture", "photo")
SYNTHETIC_OOD_KINDS = OOD_KINDS[:-1]
MOBILENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


DIGIT_LABELS = [str(d) for d in range(10)]


@dataclass
class Split:
    x: np.ndarray  # (n, size, size, 3) uint8, as preprocess_image returns
    y: np.ndarray  # (n,) int; len(labels) is the hidden background class


@dataclass
class Data:
    labels: list[str]
    kinds: tuple[str, ...]  # the background kinds trained on
    train: Split
    val: Split
    test: dict[str, tuple[np.ndarray, np.ndarray]]  # metric suffix → (pixels, labels), no background
    test_ood: dict[str, np.ndarray]  # kind → pixels, from seeds training never saw


# --- rendering ------------------------------------------------------------------------------


def to_model_input(img: Image.Image, image_size: int, *, fmt: str = "PNG", quality: int = 90) -> np.ndarray:
    """Encode like an upload and decode with the serving pipeline: train and serve see the same pixels."""
    buffer = io.BytesIO()
    # compress_level 1: zlib effort changes the file size, never the pixels, and dominates render time
    img.save(buffer, fmt, **({"quality": quality} if fmt == "JPEG" else {"compress_level": 1}))
    raw = preprocess_image(buffer.getvalue(), width=image_size, height=image_size)
    return np.frombuffer(raw, dtype=np.uint8).reshape(image_size, image_size, 3)


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
    return map_coordinates(
        np.asarray(pixels, dtype=np.float64), [yy + field[0], xx + field[1]], order=1, mode="constant"
    )


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
        paper = rng.uniform(165, 255) if dark_on_light else rng.uniform(0, 90)
        ink = rng.uniform(0, 90) if dark_on_light else rng.uniform(165, 255)
        paper = np.clip(paper + rng.normal(0, 15, 3), 0, 255)
        ink = np.clip(ink + rng.normal(0, 25, 3), 0, 255)
    background = np.broadcast_to(paper, (size, size, 3)).astype(np.float64)
    if rng.random() < 0.3:  # uneven lighting
        background = background + _ramp(size, rng)[..., None] * rng.uniform(-40, 40)
    if rng.random() < 0.3:  # paper grain: smooth low-contrast blotches
        cells = int(rng.integers(3, 16))
        blotch = Image.fromarray(rng.integers(0, 256, (cells, cells), dtype=np.uint8), "L")
        blotch = np.asarray(blotch.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64) / 255 - 0.5
        background = background + blotch[..., None] * rng.uniform(5, 30)
    pixels_rgb = background * (1 - alpha) + ink * alpha
    if rng.random() < 0.5:
        pixels_rgb = pixels_rgb + rng.normal(0, rng.uniform(0, 12), pixels_rgb.shape)
    return Image.fromarray(np.clip(pixels_rgb, 0, 255).astype(np.uint8), "RGB")


def _ramp(size: int, rng: np.random.Generator) -> np.ndarray:
    """A linear ramp from -0.5 to 0.5 across the picture in a random direction."""
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(1, size - 1) - 0.5
    return np.cos(theta) * xx + np.sin(theta) * yy


def ood_image(kind: str, rng: np.random.Generator, photo: np.ndarray | None = None) -> Image.Image:
    """A picture that is none of the classes. ``photo`` (an HxWx3 array) is cropped for ``kind="photo"``."""
    size = int(rng.integers(64, 257))
    if kind == "uniform_noise":
        shape = (size, size, 3) if rng.random() < 0.7 else (size, size, 1)
        arr = np.broadcast_to(rng.integers(0, 256, shape), (size, size, 3))
    elif kind == "gaussian_noise":
        arr = rng.normal(rng.uniform(30, 225, 3), rng.uniform(10, 90), (size, size, 3))
    elif kind == "solid":
        arr = rng.integers(0, 256, 3) + rng.normal(0, rng.uniform(0, 4), (size, size, 3))
    elif kind == "gradient":
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        arr = a + (b - a) * (_ramp(size, rng)[..., None] + 0.5)
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
    return a + (b - a) * t[..., None]


# --- data -----------------------------------------------------------------------------------


def split_digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """sklearn digits (8x8, 0..16) but the last ``HOLDOUT`` (the rendering matrix's) as train / val / test,
    stratified and seeded: 80% / 10% / 10% (every digit the matrix does not need is worth training on)."""
    digits = load_digits()
    images, targets = digits.images[:-HOLDOUT], digits.target[:-HOLDOUT]
    rest_x, test_x, rest_y, test_y = train_test_split(
        images, targets, test_size=0.1, random_state=SEED, stratify=targets
    )
    train_x, val_x, train_y, val_y = train_test_split(
        rest_x, rest_y, test_size=1 / 9, random_state=SEED, stratify=rest_y
    )
    return {"train": (train_x, train_y), "val": (val_x, val_y), "test": (test_x, test_y)}


def render_digits(images: np.ndarray, image_size: int, rng: np.random.Generator | None) -> np.ndarray:
    """Canonical renderings (rng None) or varied ones, some as JPEG like a phone photo."""
    out = []
    for pixels in images:
        if rng is None:
            out.append(to_model_input(render_digit(pixels), image_size))
            continue
        # small pictures too (28x28 like MNIST): the serving resize upsamples them
        size = int(rng.integers(20, 64)) if rng.random() < 0.25 else int(rng.integers(64, 257))
        img = render_digit(pixels, size=size, rng=rng)
        jpeg = rng.random() < 0.4
        out.append(to_model_input(img, image_size, fmt="JPEG" if jpeg else "PNG", quality=int(rng.integers(50, 96))))
    return np.stack(out)


def render_ood(
    kinds: tuple[str, ...], n_per_kind: int, image_size: int, rng: np.random.Generator, photo: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    return {
        k: np.stack([to_model_input(ood_image(k, rng, photo), image_size) for _ in range(n_per_kind)]) for k in kinds
    }


def class_folders(data_dir: Path) -> list[str]:
    """The class names of ``data_dir``: its subfolders, sorted (the model's output order)."""
    labels = sorted(p.name for p in Path(data_dir).iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(labels) < 2:
        raise ValueError(f"{data_dir} needs at least 2 class folders (<class>/*.jpg), found {labels}")
    return labels


def load_folder(data_dir: Path, labels: list[str], image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``data_dir/<label>/*`` → (pixels, label indices). Unreadable files are skipped with a warning."""
    xs, ys, skipped = [], [], 0
    for index, label in enumerate(labels):
        for path in sorted((Path(data_dir) / label).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                raw = preprocess_image(path.read_bytes(), width=image_size, height=image_size)
            except Exception as exc:  # noqa: BLE001 - one bad file in a scraped folder should not stop training
                log.warning("training.image.skipped path=%s error=%s", path, exc)
                skipped += 1
                continue
            xs.append(np.frombuffer(raw, dtype=np.uint8).reshape(image_size, image_size, 3))
            ys.append(index)
    counts = np.bincount(np.asarray(ys, dtype=np.int64), minlength=len(labels))
    if counts.min() < 3:
        raise ValueError(
            f"{data_dir} needs 3+ readable images per class, found {dict(zip(labels, counts.tolist(), strict=True))}"
        )
    log.info("training.image.folder classes=%s counts=%s skipped=%d", labels, counts.tolist(), skipped)
    return np.stack(xs), np.asarray(ys)


def digits_data(image_size: int, rng: np.random.Generator) -> Data:
    """Each training digit drawn ``DIGITS_DRAWS`` times (canonical + varied); tested canonical and varied."""
    parts = split_digits()
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = parts["train"], parts["val"], parts["test"]
    x = np.concatenate([render_digits(train_x, image_size, r) for r in (None, *[rng] * (DIGITS_DRAWS - 1))])
    val = np.concatenate([render_digits(val_x, image_size, r) for r in (None, rng, rng)])
    tests = {
        "": (render_digits(test_x, image_size, None), test_y),
        "_varied": (render_digits(test_x, image_size, np.random.default_rng(SEED + 3)), test_y),
    }
    photos = (load_sample_image("china.jpg"), load_sample_image("flower.jpg"))  # train / evaluate
    n_ood = len(x) // (3 * len(OOD_KINDS))  # background ≈ a third of the real images, like 3 classes
    return _with_background(
        DIGIT_LABELS,
        OOD_KINDS,
        (x, np.tile(train_y, DIGITS_DRAWS)),
        (val, np.tile(val_y, 3)),
        tests,
        n_ood,
        200,
        photos,
        rng,
    )


def folder_data(data_dir: Path, labels: list[str], image_size: int, rng: np.random.Generator) -> Data:
    all_x, all_y = load_folder(data_dir, labels, image_size)
    x, test_x, y, test_y = train_test_split(all_x, all_y, test_size=0.2, random_state=SEED, stratify=all_y)
    try:
        x, val_x, y, val_y = train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)
    except ValueError:  # too few images to stratify a validation split: calibrate on the training set
        log.warning("training.image.no_validation_split: temperature fitted on the training set")
        val_x, val_y = x, y
    n_ood = max(4, len(x) // (len(labels) * len(SYNTHETIC_OOD_KINDS)))  # background ≈ one class
    tests = {"": (test_x, test_y)}
    return _with_background(labels, SYNTHETIC_OOD_KINDS, (x, y), (val_x, val_y), tests, n_ood, 50, (None, None), rng)


def _with_background(
    labels: list[str],
    kinds: tuple[str, ...],
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    tests: dict[str, tuple[np.ndarray, np.ndarray]],
    n_ood: int,
    n_test_ood: int,
    photos: tuple[np.ndarray | None, np.ndarray | None],
    rng: np.random.Generator,
) -> Data:
    """Add background pictures (label ``len(labels)``) to train and val; fresh seeds for val and test."""
    size = train[0].shape[1]

    def add(xy: tuple[np.ndarray, np.ndarray], ood: dict[str, np.ndarray]) -> Split:
        ood_x = np.concatenate(list(ood.values()))
        return Split(np.concatenate([xy[0], ood_x]), np.concatenate([xy[1], np.full(len(ood_x), len(labels))]))

    val_rng, test_rng = np.random.default_rng(SEED + 1), np.random.default_rng(SEED + 2)
    return Data(
        labels=labels,
        kinds=kinds,
        train=add(train, render_ood(kinds, n_ood, size, rng, photos[0])),
        val=add(val, render_ood(kinds, max(4, n_ood // 3), size, val_rng, photos[0])),
        test=tests,
        test_ood=render_ood(kinds, n_test_ood, size, test_rng, photos[1]),
    )


# --- model ----------------------------------------------------------------------------------


def _inverted_residual(x, expand: int, out: int, stride: int):
    inputs, channels = x, x.shape[-1]
    x = _conv_bn(x, channels * expand, 1)
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
    x = layers.ReLU(6.0)(layers.BatchNormalization(momentum=0.9)(x))
    x = layers.BatchNormalization(momentum=0.9)(layers.Conv2D(out, 1, use_bias=False)(x))
    return layers.Add()([inputs, x]) if stride == 1 and channels == out else x


def _conv_bn(x, filters: int, kernel: int, stride: int = 1):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False)(x)
    # momentum 0.9, not Keras' 0.99 (MobileNetV2 uses 0.999): a few hundred steps must settle the stats
    return layers.ReLU(6.0)(layers.BatchNormalization(momentum=0.9)(x))


def build_scratch(image_size: int, outputs: int) -> keras.Model:
    """MobileNetV2-style: inverted residual blocks, about 90k parameters; outputs logits."""
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)  # 0..255 in, like mobilenet_v2.preprocess_input
    x = _conv_bn(x, 16, 3, stride=2)
    for expand, out, stride in ((3, 24, 2), (3, 24, 1), (4, 32, 2), (4, 32, 1), (4, 64, 2), (4, 64, 1)):
        x = _inverted_residual(x, expand, out, stride)
    x = layers.GlobalAveragePooling2D()(_conv_bn(x, 128, 1))
    logits = layers.Dense(outputs, name="logits")(layers.Dropout(0.2)(x))
    return keras.Model(inputs, logits, name="image_classifier")


def build_transfer(image_size: int, outputs: int, weights: Path) -> keras.Model:
    """A frozen ImageNet MobileNetV2 (``include_top=False`` weights from a local file) + a new head."""
    base = _mobilenet_from_file(image_size, Path(weights))
    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = layers.GlobalAveragePooling2D()(base(x, training=False))  # BN stays in inference mode
    logits = layers.Dense(outputs, name="logits")(layers.Dropout(0.2)(x))
    return keras.Model(inputs, logits, name="image_classifier")


def _mobilenet_from_file(image_size: int, weights: Path) -> keras.Model:
    """The file does not say its width multiplier: try the one in its name first, then each in turn."""
    alphas = sorted(MOBILENET_ALPHAS, key=lambda a: f"_{a}_" not in weights.name)
    errors = []
    for alpha in alphas:
        try:
            with warnings.catch_warnings():
                # Keras only warns when part of a file does not match and keeps random weights there
                warnings.simplefilter("error", UserWarning)
                return keras.applications.MobileNetV2(
                    input_shape=(image_size, image_size, 3), alpha=alpha, include_top=False, weights=str(weights)
                )
        except (ValueError, UserWarning) as exc:  # shapes or names do not match: another alpha
            errors.append(f"alpha={alpha}: {str(exc).splitlines()[0]}")
    raise ValueError(f"{weights} is not a MobileNetV2 include_top=False weights file ({'; '.join(errors)})")


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T minimising validation negative log-likelihood of softmax(logits / T) (Guo et al. 2017)."""
    best_t, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.2), np.log(10.0), 300)):
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        nll = float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def export_model(model: keras.Model, temperature: float, n_labels: int) -> keras.Model:
    """Append temperature, softmax and background folding as built-in layers (safe_mode loads them)."""
    scaled = layers.Rescaling(1 / temperature, name="temperature")(model.output)
    probabilities = layers.Softmax(name="softmax")(scaled)
    fold = layers.Dense(n_labels, use_bias=False, trainable=False, name="fold_background")
    output = fold(probabilities)
    # identity for the real labels; the background row spreads its mass evenly over them
    fold.set_weights([np.vstack([np.eye(n_labels), np.full((1, n_labels), 1 / n_labels)]).astype(np.float32)])
    return keras.Model(model.inputs, output, name=model.name)


# --- training -------------------------------------------------------------------------------


def _fit(model: keras.Model, train: Split, epochs: int, augment_flip: bool, rng: np.random.Generator) -> None:
    steps = epochs * int(np.ceil(len(train.x) / BATCH_SIZE))
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=max(1, steps), alpha=0.05)
    model.compile(keras.optimizers.Adam(schedule), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = train.x
    for epoch in range(epochs):
        if augment_flip:  # photos of things, unlike digits, mean the same mirrored
            flip = rng.random(len(x)) < 0.5
            x = train.x.copy()
            x[flip] = x[flip, :, ::-1]
        started = time.perf_counter()
        history = model.fit(x, train.y, batch_size=BATCH_SIZE, epochs=1, shuffle=True, verbose=0)
        log.info(
            "training.image.epoch epoch=%d/%d loss=%.4f seconds=%.1f",
            epoch + 1,
            epochs,
            history.history["loss"][-1],
            time.perf_counter() - started,
        )


def _logits(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float64)


def _id_metrics(probabilities: np.ndarray, y: np.ndarray, threshold: float, suffix: str = "") -> dict[str, Any]:
    predicted, top = probabilities.argmax(axis=1), probabilities.max(axis=1)
    covered = top >= threshold
    return {
        f"test_accuracy{suffix}": round(float(np.mean(predicted == y)), 4),
        f"coverage_at_threshold{suffix}": round(float(np.mean(covered)), 4),
        f"accuracy_at_threshold{suffix}": round(float(np.mean(predicted[covered] == y[covered])), 4)
        if covered.any()
        else None,
    }


def train(
    models_dir: Path,
    version: int | None = None,
    *,
    data_dir: Path | None = None,
    weights: Path | None = None,
    name: str | None = None,
    epochs: int | None = None,
    image_size: int = 96,
) -> ModelManifest:
    """Train, calibrate, measure and write ``models_dir/<name>/<version>/{model.keras,manifest.json}``."""
    started = time.perf_counter()
    version = version or (DIGITS_VERSION if data_dir is None else 1)
    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    threshold = DEFAULT_THRESHOLD
    labels = DIGIT_LABELS if data_dir is None else class_folders(data_dir)
    name = name or ("digits" if data_dir is None else Path(data_dir).resolve().name)
    transfer = weights is not None
    # built before the data is rendered, so a bad weights file fails in seconds
    outputs = len(labels) + 1  # + the hidden background class
    model = build_transfer(image_size, outputs, weights) if transfer else build_scratch(image_size, outputs)
    data = digits_data(image_size, rng) if data_dir is None else folder_data(data_dir, labels, image_size, rng)

    epochs = epochs or (DIGITS_EPOCHS if data_dir is None else FOLDER_EPOCHS["transfer" if transfer else "scratch"])
    log.info("training.image.start name=%s images=%d epochs=%d transfer=%s", name, len(data.train.x), epochs, transfer)
    _fit(model, data.train, epochs, augment_flip=data_dir is not None, rng=rng)

    temperature = fit_temperature(_logits(model, data.val.x), data.val.y)
    final = export_model(model, temperature, len(labels))
    metrics: dict[str, Any] = {}
    for suffix, (x, y) in data.test.items():
        metrics.update(_id_metrics(_logits(final, x), y, threshold, suffix))
    metrics["ood_unknown_rate"] = {
        kind: round(float(np.mean(_logits(final, x).max(axis=1) < threshold)), 4) for kind, x in data.test_ood.items()
    }
    metrics.update(
        temperature=round(temperature, 4),
        threshold=threshold,
        test_images=len(data.test[""][1]),
        ood_images_per_kind=len(next(iter(data.test_ood.values()))),
        train_images=len(data.train.x),
        epochs=epochs,
        train_seconds=round(time.perf_counter() - started, 1),
    )
    command = ["python -m training.image", f"--version {version}"]
    if data_dir is not None:
        command += [f"--data {data_dir}", f"--name {name}"] + ([f"--weights {weights}"] if transfer else [])
    if image_size != 96:
        command.append(f"--image-size {image_size}")
    fields = {
        "name": name,
        "version": version,
        "framework": "keras",
        "task": "classification",
        "queue": "gpu",
        "input": {"type": "image", "height": image_size, "width": image_size, "channels": 3},
        "labels": labels,
        "threshold": threshold,
        "batching": {"max_batch_size": 32, "max_delay_ms": 5},
        "metrics": metrics,
        "training_command": " ".join(command),
        "card": _card(data_dir, transfer, data.kinds, metrics),
    }
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "model.keras"
        final.save(saved)
        if data_dir is None:  # what users get: uploads through preprocess_image and the worker family
            metrics["rendering_matrix"] = _rendering_matrix(fields, saved)
            metrics["train_seconds"] = round(time.perf_counter() - started, 1)
            fields["card"] = _card(data_dir, transfer, data.kinds, metrics)
        return write_version(models_dir, fields, "model.keras", lambda path: shutil.copyfile(saved, path))


def _rendering_matrix(fields: dict[str, Any], artifact: Path) -> dict[str, Any]:
    """``training.digits_eval`` over the saved file, loaded exactly as a worker loads it."""
    from worker.families.image import ImageClassifier  # the serving code, not a copy of it

    manifest = ModelManifest.model_validate({**fields, "artifact": artifact.name, "sha256": sha256_of(artifact)})
    result = rendering_matrix(ImageClassifier(manifest, artifact))
    log.info("training.image.rendering_matrix %s misses=%s", result, misses(result))
    return result


def _card(data_dir: Path | None, transfer: bool, kinds: tuple[str, ...], metrics: dict[str, Any]) -> dict[str, str]:
    if data_dir is None:
        summary = "A handwritten digit (0-9) from a picture; 'unknown' for anything that is not a digit."
        data = (
            f"scikit-learn load_digits (1,797 8x8 images): the last {HOLDOUT} held out for the rendering matrix, "
            "the rest in a stratified 80/10/10 train/val/test split (seed 42), rendered as RGB pictures in both "
            "polarities, elastically warped, as the whole 8x8 frame upscaled blocky (nearest) or smooth and "
            "slanted, or drawn small, off-centre, rotated, thin or thick, with varied ink, paper grain, light, "
            "blur, noise and JPEG; "
            "background class: synthetic noise, solid colours, gradients, shapes, textures and crops of "
            "scikit-learn's china.jpg (evaluated on flower.jpg crops and other seeds)"
        )
        limitations = (
            "Digits rebuilt from 8x8 scans: fine detail of real handwriting is unseen. One centred digit per "
            "picture; multi-digit numbers, heavy clutter or strong perspective are out of scope. Out-of-"
            "distribution detection was trained on synthetic pictures and crops of one photo, not real-world variety."
        )
    else:
        summary = f"Image classes from the folders of {Path(data_dir).name}; 'unknown' below the threshold."
        data = f"{data_dir}: one folder per class, stratified 80/20 train/test split (seed 42)"
        limitations = "Only as good as the folder; 'unknown' was trained on synthetic pictures only."
    base = "frozen ImageNet MobileNetV2 base + new head" if transfer else "inverted-residual CNN from scratch"
    card = {}
    if "rendering_matrix" in metrics:
        matrix = metrics["rendering_matrix"]
        rows = "; ".join(
            f"{name} {m['accuracy']:.1%} right, {m['unknown_rate']:.1%} unknown"
            for name, m in matrix["renderings"].items()
        )
        card["evaluation"] = (
            f"rendering matrix (training.digits_eval), {matrix['held_out_digits']} held-out digits per rendering, "
            f"uploaded as files through preprocess_image and the worker: {rows}. Non-digit pictures answered "
            f"unknown: {matrix['non_digit_unknown_rate_overall']:.1%} "
            f"({', '.join(f'{k} {v:.1%}' for k, v in matrix['non_digit_unknown_rate'].items())})"
        )
    return {
        "summary": summary,
        "data": data,
        "algorithm": (
            f"{base}, Adam with cosine decay, plus a hidden background class trained on {', '.join(kinds)}; "
            f"logits divided by a validation-fitted temperature ({metrics['temperature']}), background probability "
            "spread evenly over the labels, all inside the saved model"
        ),
        "limitations": limitations,
    } | card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="folder of <class>/*.jpg|jpeg|png; default: sklearn digits")
    parser.add_argument("--weights", type=Path, help="local MobileNetV2 include_top=False weights (transfer)")
    parser.add_argument("--name", help="model name (default: digits, or the data folder's name)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--version", type=int, help=f"default: {DIGITS_VERSION} for digits, 1 for a folder")
    parser.add_argument("--models-dir", type=Path, help=MODELS_DIR_HELP)
    add_publish_argument(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with output_dir(args) as models_dir:
        manifest = train(
            models_dir,
            args.version,
            data_dir=args.data,
            weights=args.weights,
            name=args.name,
            epochs=args.epochs,
            image_size=args.image_size,
        )
        publish_if_asked(args, models_dir, manifest)
    print(f"{manifest.name} v{manifest.version}: {manifest.metrics}")  # noqa: T201 - CLI output


if __name__ == "__main__":
    main()
