"""Image uploads → the raw RGB pixels a model sees. Pillow only: the API image has no numpy/TensorFlow.

The API runs this once per upload and stores the result (``width * height * 3`` bytes, row-major
HWC, uint8) as the job's claim check; training runs the same function over its data, so a served
image goes through exactly the pixels pipeline the model was trained on.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from shared.errors import BadRequest, ErrorCode, PayloadTooLarge, UnsupportedMediaType

log = logging.getLogger(__name__)

SUPPORTED_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF"})
RESAMPLE = Image.Resampling.BILINEAR
# Shrink big photos by whole factors before the filter: much faster on a 24 MP upload, and the
# result is indistinguishable at model resolution. Part of the pipeline, so training uses it too.
REDUCING_GAP = 3.0

# Magic numbers, checked before Pillow sees the bytes: only these five decoders ever run on an
# upload (TIFF, PDF, SVG, PSD… are refused without being parsed).
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)

# warnings.catch_warnings swaps process-global state; header parsing is microseconds, so
# serialising it is cheaper than reasoning about interleaved catch_warnings in API threads.
_OPEN_LOCK = threading.Lock()


def detect_format(data: bytes) -> str | None:
    """The Pillow format name of ``data`` if it is one we accept, from its magic number; else None."""
    head = bytes(data[:16])
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    return None


def preprocess_image(data: bytes, *, width: int, height: int, max_pixels: int = 40_000_000) -> bytes:
    """Decode an upload and resize it to ``width`` x ``height``: ``width * height * 3`` RGB bytes.

    Raises ``UnsupportedMediaType`` (not JPEG/PNG/WebP/BMP/GIF), ``PayloadTooLarge`` (more than
    ``max_pixels``, refused from the header before any pixel is decoded) or ``BadRequest``
    (empty, corrupt or truncated).
    """
    if width < 1 or height < 1:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    fmt = _accepted_format(data)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone flipped Pillow's global; truncated uploads would be silently padded with grey.
        log.warning("images.load_truncated_enabled: truncated uploads will not be detected")
    img = _open(data, fmt, max_pixels)
    try:
        _draft(img, width, height)
        img.load()  # decode now, inside the try: truncation and corruption surface here
        img = _upright(img)
        img = _to_rgb(img)
        img = img.resize((width, height), RESAMPLE, reducing_gap=REDUCING_GAP)
    except Image.DecompressionBombError as exc:
        raise _too_large(exc) from exc
    except Exception as exc:
        raise BadRequest(f"corrupt or truncated {fmt} image: {exc}", code=ErrorCode.CORRUPT_IMAGE) from exc
    out = img.tobytes()
    if len(out) != width * height * 3:  # pragma: no cover - a Pillow contract, checked not trusted
        raise BadRequest(
            f"decoded image has {len(out)} bytes, expected {width * height * 3}", code=ErrorCode.CORRUPT_IMAGE
        )
    return out


def _accepted_format(data: bytes) -> str:
    if not data:
        raise BadRequest("the image is empty (0 bytes)", code=ErrorCode.EMPTY_IMAGE)
    fmt = detect_format(data)
    if fmt is None:
        raise UnsupportedMediaType(
            f"unsupported image format; send one of {', '.join(sorted(SUPPORTED_FORMATS))}",
            code=ErrorCode.UNSUPPORTED_IMAGE_FORMAT,
        )
    return fmt


def image_pixels(data: bytes, *, max_pixels: int = 40_000_000) -> int:
    """The pixel count of an upload from its header alone, with the same refusals as
    ``preprocess_image`` (format, corrupt header, too many pixels) before any pixel is decoded."""
    w, h = _open(data, _accepted_format(data), max_pixels).size
    return w * h


def _open(data: bytes, fmt: str, max_pixels: int) -> Image.Image:
    """Parse only the header (``Image.open`` is lazy) and refuse too many pixels before decoding."""
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            # Pillow warns (then errors at twice the limit) above its own MAX_IMAGE_PIXELS; both are ours.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large(exc) from exc
    except UnidentifiedImageError as exc:
        raise BadRequest(f"corrupt {fmt} image: its header cannot be read", code=ErrorCode.CORRUPT_IMAGE) from exc
    except Exception as exc:
        raise BadRequest(f"corrupt {fmt} image: {exc}", code=ErrorCode.CORRUPT_IMAGE) from exc
    w, h = img.size
    if w < 1 or h < 1:
        raise BadRequest(f"corrupt {fmt} image: size {w}x{h}", code=ErrorCode.CORRUPT_IMAGE)
    if w * h > max_pixels:
        raise PayloadTooLarge(
            f"image is {w}x{h} = {w * h:,} pixels; at most {max_pixels:,} are accepted", code=ErrorCode.IMAGE_TOO_LARGE
        )
    return img


def _too_large(exc: Exception) -> PayloadTooLarge:
    return PayloadTooLarge(f"image has too many pixels to decode safely ({exc})", code=ErrorCode.IMAGE_TOO_LARGE)


def _draft(img: Image.Image, width: int, height: int) -> None:
    """Let libjpeg decode a big JPEG at 1/2..1/8 scale (never below the target size): less memory and time."""
    if img.format == "JPEG" and img.mode in ("RGB", "L"):
        # The draft is sized for the upright image; swap if EXIF will rotate it by 90°.
        orientation = img.getexif().get(0x0112, 1)
        size = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
        img.draft(img.mode, size)


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phones store photos sideways and set a tag)."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception as exc:  # noqa: BLE001 - a broken EXIF block should not reject good pixels
        log.info("images.exif_ignored error=%s", exc)
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any mode → RGB: transparency composited on white, 16-bit scaled (Pillow would clip it)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # Pillow's I→L conversion clips at 255; 16-bit data needs scaling to keep its contrast.
        img = img.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img if img.mode == "RGB" else img.convert("RGB")
