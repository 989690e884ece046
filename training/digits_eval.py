"""The digits model measured the way users meet it: a fixed rendering matrix of held-out digits.

``python -m training.digits_eval [--version N] [--per-rendering N]`` prints the matrix for a shipped
version. Each rendering is a natural way to post one of scikit-learn's digits as a picture (the
dataset's own white-on-black, its inverse, blocky and smooth upscales, MNIST-style framing, a
phone-like JPEG on paper). The digits are the last ``HOLDOUT`` of ``load_digits``, which the
training never sees, and every picture goes the way an upload goes: PNG/JPEG bytes →
``shared.images.preprocess_image`` → the worker family's ``prepare`` / ``predict_batch``.
Non-digit pictures (noise, solid colours, gradients, shapes, textures, scikit-learn's sample
photos) are measured the same way and should answer ``unknown``.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageFilter
from sklearn.datasets import load_digits, load_sample_image

from shared.images import preprocess_image
from training.image.background import SYNTHETIC_OOD_KINDS, ood_image

HOLDOUT = 200  # the last N of load_digits: never trained, validated or calibrated on
UNKNOWN = "unknown"
TARGET_ACCURACY, TARGET_UNKNOWN, TARGET_OOD_UNKNOWN = 0.95, 0.05, 0.99


class Predictor(Protocol):  # worker.families.image.ImageClassifier
    # Any, as in worker.families.Predictor: a family takes whatever raw input the API stored, and answers JSON
    height: int
    width: int

    def prepare(self, raw_input: Any) -> np.ndarray: ...
    def predict_batch(self, prepared: list[np.ndarray]) -> list[dict[str, Any]]: ...


def held_out_digits(n: int = HOLDOUT) -> tuple[np.ndarray, np.ndarray]:
    """The last ``n`` sklearn digits (8x8, values 0..16) and their targets."""
    digits = load_digits()
    return digits.images[-n:], digits.target[-n:]


def _gray(pixels: np.ndarray, *, invert: bool) -> Image.Image:
    """The 8x8 digit scaled to 0..255 as a grey picture: white ink on black, or inverted."""
    arr = np.asarray(pixels, dtype=np.float64) * (255 / 16)
    return Image.fromarray((255 - arr if invert else arr).round().astype(np.uint8), "L")


def _upscale(size: int, resample: Image.Resampling, *, invert: bool) -> Callable[[np.ndarray], Image.Image]:
    return lambda p: _gray(p, invert=invert).resize((size, size), resample)


def _padded_28(pixels: np.ndarray) -> Image.Image:
    """Black on white with a 2-pixel paper margin, bicubic to 28x28."""
    img = Image.new("L", (12, 12), 255)
    img.paste(_gray(pixels, invert=True), (2, 2))
    return img.resize((28, 28), Image.Resampling.BICUBIC)


def _mnist(pixels: np.ndarray) -> Image.Image:
    """MNIST's framing: white on black, the digit in a 20x20 box centred on a 28x28 black square."""
    img = Image.new("L", (28, 28), 0)
    img.paste(_gray(pixels, invert=False).resize((20, 20), Image.Resampling.BICUBIC), (4, 4))
    return img


def _paper_photo(pixels: np.ndarray, index: int) -> Image.Image:
    """Dark ink on grainy, unevenly lit paper, smallish and off-centre, blurred a little (saved as JPEG)."""
    rng = np.random.default_rng(1000 + index)  # fixed per digit: the matrix is the same every run
    size = 160
    yy, xx = np.mgrid[0:size, 0:size] / size
    paper = 225 + 20 * (xx - 0.5) - 15 * (yy - 0.5) + rng.normal(0, 6, (size, size))
    mask = _gray(pixels, invert=False).resize((56, 72), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(mask, (int(rng.integers(20, 85)), int(rng.integers(15, 75))))
    alpha = np.asarray(canvas.filter(ImageFilter.GaussianBlur(1.0)), dtype=np.float64) / 255
    ink = np.array([40.0, 45.0, 80.0])  # blue-black ballpoint
    rgb = paper[..., None] * (1 - alpha[..., None]) + ink * alpha[..., None]
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


# name → (render(pixels, index) → picture, file format)
RENDERINGS: dict[str, tuple[Callable[[np.ndarray, int], Image.Image], str]] = {
    "white_on_black_nearest_64": (lambda p, i: _upscale(64, Image.Resampling.NEAREST, invert=False)(p), "PNG"),
    "white_on_black_bilinear_96": (lambda p, i: _upscale(96, Image.Resampling.BILINEAR, invert=False)(p), "PNG"),
    "black_on_white_nearest_64": (lambda p, i: _upscale(64, Image.Resampling.NEAREST, invert=True)(p), "PNG"),
    "black_on_white_bilinear_96": (lambda p, i: _upscale(96, Image.Resampling.BILINEAR, invert=True)(p), "PNG"),
    "black_on_white_padded_bicubic_28": (lambda p, i: _padded_28(p), "PNG"),
    "mnist_white_on_black_28": (lambda p, i: _mnist(p), "PNG"),
    "ink_on_paper_photo_jpeg": (_paper_photo, "JPEG"),
}


def encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **({"quality": 75} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def non_digit_pictures(n_per_kind: int = 100) -> dict[str, list[bytes]]:
    """Encoded pictures that are no digit: the synthetic kinds (unseen seeds), crops of flower.jpg (training
    crops china.jpg only) and both whole sample photos."""
    rng = np.random.default_rng(7_000_003)  # no training seed: fresh pictures
    out = {k: [encode(ood_image(k, rng)) for _ in range(n_per_kind)] for k in SYNTHETIC_OOD_KINDS}
    photos = [load_sample_image("china.jpg"), load_sample_image("flower.jpg")]
    crops = [encode(ood_image("photo", rng, photos[1]), "JPEG" if i % 3 == 0 else "PNG") for i in range(n_per_kind)]
    crops[:2] = [encode(Image.fromarray(p), "JPEG") for p in photos]  # and the whole photos
    out["photo"] = crops
    return out


def _answers(predictor: Predictor, uploads: list[bytes]) -> list[str]:
    raws = [preprocess_image(u, width=predictor.width, height=predictor.height) for u in uploads]
    return [o["label"] for o in predictor.predict_batch([predictor.prepare(r) for r in raws])]


def rendering_matrix(predictor: Predictor, n: int = HOLDOUT, n_ood_per_kind: int = 100) -> dict[str, Any]:
    """Per rendering: accuracy and ``unknown`` rate over ``n`` held-out digits; per non-digit kind: ``unknown`` rate."""
    images, targets = held_out_digits(HOLDOUT)
    picked = np.linspace(0, HOLDOUT - 1, n).round().astype(int)  # a sample spread over all the held-out writers
    images, targets = images[picked], targets[picked]
    truth = [str(t) for t in targets]
    matrix = {}
    for name, (render, fmt) in RENDERINGS.items():
        labels = _answers(predictor, [encode(render(p, i), fmt) for i, p in zip(picked, images, strict=True)])
        matrix[name] = {
            "accuracy": round(float(np.mean([a == t for a, t in zip(labels, truth, strict=True)])), 4),
            "unknown_rate": round(float(np.mean([a == UNKNOWN for a in labels])), 4),
        }
    result: dict[str, Any] = {"held_out_digits": n, "renderings": matrix}  # JSON, into the manifest
    if n_ood_per_kind:
        ood = non_digit_pictures(n_ood_per_kind)
        rates = {k: round(float(np.mean([a == UNKNOWN for a in _answers(predictor, v)])), 4) for k, v in ood.items()}
        result["non_digit_unknown_rate"] = rates
        result["non_digit_unknown_rate_overall"] = round(float(np.mean(list(rates.values()))), 4)
    return result


def misses(result: dict[str, Any]) -> list[str]:
    """The targets ``result`` misses, in words (empty: all met)."""
    out = []
    for name, m in result["renderings"].items():
        if m["accuracy"] < TARGET_ACCURACY:
            out.append(f"{name}: accuracy {m['accuracy']} < {TARGET_ACCURACY}")
        if m["unknown_rate"] > TARGET_UNKNOWN:
            out.append(f"{name}: unknown {m['unknown_rate']} > {TARGET_UNKNOWN}")
    for kind, rate in result.get("non_digit_unknown_rate", {}).items():
        if rate < TARGET_OOD_UNKNOWN:
            out.append(f"non-digit {kind}: unknown {rate} < {TARGET_OOD_UNKNOWN}")
    return out


def main() -> None:
    from shared.manifests import ModelRepository
    from training.common import default_models_dir
    from worker.families.image import ImageClassifier
    from worker.runtime import ModelRuntime

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", type=int, help="default: the newest")
    parser.add_argument("--per-rendering", type=int, default=HOLDOUT)
    parser.add_argument("--non-digits-per-kind", type=int, default=100)
    args = parser.parse_args()
    repository = ModelRepository(default_models_dir())
    runtime = ModelRuntime(repository)
    runtime.load_all()
    version = args.version or max(v for (name, v) in runtime.loaded if name == "digits")
    predictor = runtime.get("digits", version).predictor
    if not isinstance(predictor, ImageClassifier):
        raise SystemExit(f"digits v{version} is not an image classifier")
    result = rendering_matrix(predictor, args.per_rendering, args.non_digits_per_kind)
    print(f"digits v{version}")  # noqa: T201 - CLI output
    for name, m in result["renderings"].items():
        print(f"  {name:36s} right {m['accuracy']:.3f}  unknown {m['unknown_rate']:.3f}")  # noqa: T201
    for kind, rate in result.get("non_digit_unknown_rate", {}).items():
        print(f"  non-digit {kind:26s} unknown {rate:.3f}")  # noqa: T201
    print("misses:", misses(result) or "none")  # noqa: T201


if __name__ == "__main__":
    main()
