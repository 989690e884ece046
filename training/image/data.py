"""The training data: sklearn digits (all but the rendering matrix's) or a folder of classes, rendered
through the serving pipeline, with background pictures added to train and validation."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits, load_sample_image
from sklearn.model_selection import train_test_split

from shared.images import preprocess_image
from training.digits_eval import HOLDOUT
from training.image.background import OOD_KINDS, SYNTHETIC_OOD_KINDS, ood_image
from training.image.digit_pictures import render_digit

log = logging.getLogger(__name__)

SEED = 42
DIGITS_DRAWS = 7  # renderings of each training digit: the canonical one and 6 varied
# Filled shapes are the background kind most often read as a digit (a bar, a blob like a 0): twice as many.
DIGITS_OOD_WEIGHTS = {"shapes": 2.0}
CALIBRATION_OOD_PER_KIND = 600  # background pictures (fresh seeds) the digits threshold is chosen on
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
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
    calibration_ood: dict[str, np.ndarray]  # kind → pixels (fresh seeds, training's photo) to set a threshold on


def to_model_input(img: Image.Image, image_size: int, *, fmt: str = "PNG", quality: int = 90) -> np.ndarray:
    """Encode like an upload and decode with the serving pipeline: train and serve see the same pixels."""
    buffer = io.BytesIO()
    # compress_level 1: zlib effort changes the file size, never the pixels, and dominates render time
    img.save(buffer, fmt, **({"quality": quality} if fmt == "JPEG" else {"compress_level": 1}))
    raw = preprocess_image(buffer.getvalue(), width=image_size, height=image_size)
    return np.frombuffer(raw, dtype=np.uint8).reshape(image_size, image_size, 3)


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
    kinds: tuple[str, ...],
    n_per_kind: int,
    image_size: int,
    rng: np.random.Generator,
    photo: np.ndarray | None = None,
    weights: dict[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """``n_per_kind`` pictures of each kind (times its weight, 1 unless given), through the serving pipeline."""
    counts = {k: round(n_per_kind * (weights or {}).get(k, 1.0)) for k in kinds}
    return {
        k: np.stack([to_model_input(ood_image(k, rng, photo), image_size) for _ in range(counts[k])]) for k in kinds
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
        ood_weights=DIGITS_OOD_WEIGHTS,
        n_calibration_ood=CALIBRATION_OOD_PER_KIND,
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
    *,
    ood_weights: dict[str, float] | None = None,
    n_calibration_ood: int = 0,
) -> Data:
    """Add background pictures (label ``len(labels)``) to train and val; fresh seeds for val, test and
    calibration (the training photo for val and calibration, the other one for test)."""
    size = train[0].shape[1]

    def add(xy: tuple[np.ndarray, np.ndarray], ood: dict[str, np.ndarray]) -> Split:
        ood_x = np.concatenate(list(ood.values()))
        return Split(np.concatenate([xy[0], ood_x]), np.concatenate([xy[1], np.full(len(ood_x), len(labels))]))

    val_rng, test_rng = np.random.default_rng(SEED + 1), np.random.default_rng(SEED + 2)
    calibration_rng = np.random.default_rng(SEED + 4)
    return Data(
        labels=labels,
        kinds=kinds,
        train=add(train, render_ood(kinds, n_ood, size, rng, photos[0], ood_weights)),
        val=add(val, render_ood(kinds, max(4, n_ood // 3), size, val_rng, photos[0], ood_weights)),
        test=tests,
        test_ood=render_ood(kinds, n_test_ood, size, test_rng, photos[1]),
        calibration_ood=render_ood(kinds, n_calibration_ood, size, calibration_rng, photos[0])
        if n_calibration_ood
        else {},
    )
