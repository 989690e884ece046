"""Upload decoding: every accepted format to RGB, EXIF honoured, bad bytes refused with the right error."""

from __future__ import annotations

import io
import struct
import time
import zlib

import pytest
from PIL import Image

from shared.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from shared.images import SUPPORTED_FORMATS, detect_format, preprocess_image

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def pixel(raw: bytes, width: int, x: int, y: int) -> tuple[int, int, int]:
    i = (y * width + x) * 3
    return tuple(raw[i : i + 3])


def close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def noise(size: tuple[int, int] = (256, 256)) -> Image.Image:
    return Image.effect_noise(size, 60).convert("RGB")


@pytest.mark.parametrize("fmt", sorted(SUPPORTED_FORMATS))
def test_every_format_is_decoded_and_resized(fmt):
    data = encode(Image.new("RGB", (50, 40), RED), fmt)
    assert detect_format(data) == fmt
    out = preprocess_image(data, width=12, height=10)
    assert len(out) == 12 * 10 * 3
    assert close(pixel(out, 12, 6, 5), RED)


@pytest.mark.parametrize(
    ("img", "expected"),
    [
        (Image.new("L", (20, 20), 128), (128, 128, 128)),
        (Image.new("1", (20, 20), 1), WHITE),
        (Image.new("RGBA", (20, 20), (0, 0, 0, 0)), WHITE),  # transparent → white, not black
        (Image.new("LA", (20, 20), (0, 0)), WHITE),
        (Image.new("I;16", (20, 20), 40000), (155, 155, 155)),  # scaled from 16 bits, not clipped to 255
        (Image.new("I;16", (20, 20), 65535), WHITE),
        (Image.new("P", (20, 20), 0), (0, 0, 0)),
    ],
    ids=["grayscale", "bilevel", "rgba", "la", "16-bit", "16-bit-max", "palette"],
)
def test_modes_become_rgb(img, expected):
    out = preprocess_image(encode(img, "PNG"), width=4, height=4)
    assert close(pixel(out, 4, 2, 2), expected, tolerance=2)


def test_palette_with_transparency_is_composited_on_white():
    img = Image.new("P", (20, 20), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 10, 20))  # left half red, right half palette index 0 = transparent black
    out = preprocess_image(encode(img, "PNG", transparency=0), width=20, height=20)
    assert close(pixel(out, 20, 2, 10), RED, 2) and close(pixel(out, 20, 17, 10), WHITE, 2)


def test_cmyk_jpeg():
    out = preprocess_image(encode(Image.new("CMYK", (30, 30), (0, 255, 255, 0)), "JPEG"), width=8, height=8)
    assert close(pixel(out, 8, 4, 4), RED)


def test_gif_first_frame_only():
    frames = [Image.new("RGB", (30, 30), c) for c in (RED, BLUE, (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert close(pixel(preprocess_image(data, width=8, height=8), 8, 4, 4), RED)


@pytest.mark.parametrize(("orientation", "top", "bottom"), [(1, None, None), (6, RED, BLUE), (8, BLUE, RED)])
def test_exif_orientation_is_honoured(orientation, top, bottom):
    stored = Image.new("RGB", (80, 40), BLUE)
    stored.paste(RED, (0, 0, 40, 40))  # stored sideways: red left half, blue right half
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = preprocess_image(encode(stored, "JPEG", exif=exif.tobytes(), quality=95), width=40, height=80)
    if orientation == 1:  # not rotated: stretched into the portrait box, red still on the left
        assert close(pixel(out, 40, 5, 40), RED) and close(pixel(out, 40, 35, 40), BLUE)
    else:  # 6 = rotate 90° clockwise to view: the left half comes to the top; 8 the other way
        assert close(pixel(out, 40, 20, 5), top) and close(pixel(out, 40, 20, 75), bottom)


def test_big_jpeg_is_downscaled_by_draft_and_still_right():
    img = Image.new("RGB", (3000, 2000), BLUE)
    img.paste(RED, (0, 0, 1500, 2000))
    out = preprocess_image(encode(img, "JPEG"), width=30, height=20)
    assert close(pixel(out, 30, 5, 10), RED) and close(pixel(out, 30, 25, 10), BLUE)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_truncated_image_is_a_bad_request(fmt):
    data = encode(noise(), fmt)
    with pytest.raises(BadRequest) as info:
        preprocess_image(data[: len(data) // 2], width=8, height=8)
    assert info.value.code == "corrupt_image"
    assert fmt in info.value.detail


def test_jpeg_missing_its_tail_is_a_bad_request():
    data = encode(noise((512, 512)), "JPEG", quality=90)
    with pytest.raises(BadRequest, match="truncated"):
        preprocess_image(data[:-2000], width=8, height=8)


@pytest.mark.parametrize(
    "data", [b"\xff\xd8\xff" + b"garbage" * 20, b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"GIF89a\x01", b"BM" + b"\xff" * 60]
)
def test_corrupt_bytes_are_a_bad_request(data):
    with pytest.raises(BadRequest) as info:
        preprocess_image(data, width=8, height=8)
    assert info.value.code == "corrupt_image"


def test_empty_is_a_bad_request():
    with pytest.raises(BadRequest, match="empty"):
        preprocess_image(b"", width=8, height=8)


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
        encode(Image.new("RGB", (10, 10)), "TIFF"),
        b"just some text, not an image",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        encode(Image.new("RGB", (16, 16)), "ICO"),
    ],
    ids=["pdf", "tiff", "text", "svg", "ico"],
)
def test_other_formats_are_unsupported(data):
    assert detect_format(data) is None
    with pytest.raises(UnsupportedMediaType) as info:
        preprocess_image(data, width=8, height=8)
    assert info.value.code == "unsupported_image_format"


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR declaring ``width`` x ``height``, with almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [7_000, 10_000, 15_000, 100_000])  # ours, Pillow's warning, Pillow's error
def test_decompression_bomb_is_refused_from_the_header(side):
    data = png_header_only(side, side)  # 100_000² RGB would be 30 GB decoded
    started = time.perf_counter()
    with pytest.raises(PayloadTooLarge) as info:
        preprocess_image(data, width=8, height=8)
    assert time.perf_counter() - started < 0.5
    assert info.value.code == "image_too_large"


def test_real_small_file_with_huge_dimensions_is_refused():
    data = encode(Image.new("1", (8_000, 6_000)), "PNG")  # 48 Mpx in a few kB
    assert len(data) < 100_000
    with pytest.raises(PayloadTooLarge):
        preprocess_image(data, width=8, height=8)
    assert len(preprocess_image(data, width=8, height=8, max_pixels=50_000_000)) == 8 * 8 * 3


def test_max_pixels_is_configurable():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(PayloadTooLarge, match="10,000 pixels"):
        preprocess_image(data, width=8, height=8, max_pixels=9_999)


@pytest.mark.parametrize(("width", "height"), [(1, 1), (96, 96), (17, 5)])
def test_output_is_width_times_height_times_three(width, height):
    assert len(preprocess_image(encode(noise((40, 30)), "PNG"), width=width, height=height)) == width * height * 3
