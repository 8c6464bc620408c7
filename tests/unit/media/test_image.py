"""kurate.media.image.decode_image / load_image on the awkward images found in real folders."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from kurate.errors import CorruptFileError
from kurate.media import formats, image


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _two_tone(w: int = 40, h: int = 20) -> Image.Image:
    """Left half red, right half blue: orientation changes are visible in the pixels."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


def _px(img: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.asarray(img)[y, x])  # type: ignore[return-value]


def _close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_plain_rgb_jpeg_round_trip() -> None:
    out = image.decode_image(_encode(_two_tone(), "JPEG", quality=95), "a.jpg")
    assert out.mode == "RGB" and out.size == (40, 20)
    assert _close(_px(out, 2, 10), (255, 0, 0)) and _close(_px(out, 37, 10), (0, 0, 255))


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    data = _encode(_two_tone(40, 20), "JPEG", quality=95, exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).size == (40, 20)  # the raw pixels are landscape
    out = image.decode_image(data, "rotated.jpg")
    assert out.size == (20, 40)
    # Clockwise rotation brings the left (red) half to the top.
    assert _close(_px(out, 10, 2), (255, 0, 0)) and _close(_px(out, 10, 37), (0, 0, 255))


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 8), (0, 255, 255, 0))  # pure red in CMYK
    data = _encode(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = image.decode_image(data, "cmyk.jpg")
    assert out.mode == "RGB" and out.size == (16, 8)
    assert _close(_px(out, 8, 4), (255, 0, 0))


def test_16_bit_png_is_scaled_to_8_bit() -> None:
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    data = _encode(Image.fromarray(arr), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = image.decode_image(data, "deep.png")
    assert out.mode == "RGB"
    assert [_px(out, x, 0) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_dark_16_bit_png_stays_dark() -> None:
    # 16-bit values <= 255 are very dark, not full range: must not be mistaken for 8-bit data.
    data = _encode(Image.fromarray(np.full((2, 2), 255, np.uint16)), "PNG")
    assert _px(image.decode_image(data), 0, 0) == (1, 1, 1)


def test_palette_png_with_transparency_is_composited_on_white() -> None:
    img = Image.new("P", (4, 2), 0)
    img.putpalette([0, 0, 0, 0, 200, 0] + [0] * (254 * 3))
    img.putpixel((3, 1), 1)
    data = _encode(img, "PNG", transparency=0)
    out = image.decode_image(data, "pal.png")
    assert out.mode == "RGB"
    assert _px(out, 0, 0) == (255, 255, 255)  # transparent index -> white background, not black
    assert _px(out, 3, 1) == (0, 200, 0)


def test_palette_png_without_transparency() -> None:
    img = Image.new("P", (2, 2), 1)
    img.putpalette([0, 0, 0, 10, 20, 30] + [0] * (254 * 3))
    assert _px(image.decode_image(_encode(img, "PNG")), 1, 1) == (10, 20, 30)


def test_rgba_is_composited_on_white() -> None:
    arr = np.zeros((2, 3, 4), np.uint8)
    arr[:, 0] = (255, 0, 0, 255)  # opaque red
    arr[:, 1] = (255, 0, 0, 128)  # half-transparent red
    arr[:, 2] = (0, 0, 0, 0)  # fully transparent
    out = image.decode_image(_encode(Image.fromarray(arr, "RGBA"), "PNG"), "alpha.png")
    assert out.mode == "RGB"
    assert _px(out, 0, 0) == (255, 0, 0)
    assert _close(_px(out, 1, 0), (255, 127, 127), tol=2)
    assert _px(out, 2, 0) == (255, 255, 255)


def test_greyscale_and_greyscale_alpha() -> None:
    out = image.decode_image(_encode(Image.new("L", (3, 3), 77), "PNG"), "grey.png")
    assert out.mode == "RGB" and _px(out, 1, 1) == (77, 77, 77)
    out = image.decode_image(_encode(Image.new("LA", (3, 3), (77, 0)), "PNG"), "grey_alpha.png")
    assert _px(out, 1, 1) == (255, 255, 255)


def test_bilevel_image() -> None:
    img = Image.new("1", (4, 4), 0)
    img.putpixel((1, 1), 1)
    out = image.decode_image(_encode(img, "PNG"))
    assert _px(out, 0, 0) == (0, 0, 0) and _px(out, 1, 1) == (255, 255, 255)


def test_multi_frame_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (6, 5), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 3
    out = image.decode_image(buf.getvalue(), "anim.gif")
    assert out.mode == "RGB" and out.size == (6, 5)
    assert _close(_px(out, 3, 2), (255, 0, 0))


def test_multi_page_tiff_uses_first_page() -> None:
    pages = [Image.new("RGB", (4, 4), c) for c in ((10, 20, 30), (200, 100, 0))]
    buf = io.BytesIO()
    pages[0].save(buf, "TIFF", save_all=True, append_images=pages[1:])
    assert _px(image.decode_image(buf.getvalue(), "pages.tif"), 0, 0) == (10, 20, 30)


def test_truncated_jpeg_is_corrupt() -> None:
    data = _encode(Image.effect_noise((64, 64), 40).convert("RGB"), "JPEG", quality=90)
    with pytest.raises(CorruptFileError) as info:
        image.decode_image(data[: len(data) // 2], "cut.jpg")
    assert info.value.name == "cut.jpg"
    assert "truncated" in info.value.reason


def test_truncated_png_is_corrupt() -> None:
    data = _encode(Image.effect_noise((64, 64), 40), "PNG")
    with pytest.raises(CorruptFileError):
        image.decode_image(data[: len(data) // 2], "cut.png")


def test_zero_bytes_is_corrupt() -> None:
    with pytest.raises(CorruptFileError) as info:
        image.decode_image(b"", "empty.jpg")
    assert info.value.reason == "empty file (0 bytes)"


def test_random_bytes_are_corrupt() -> None:
    noise = np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    with pytest.raises(CorruptFileError) as info:
        image.decode_image(noise, "noise.jpg")
    assert info.value.reason.startswith("not a readable image")


def test_text_named_png_is_corrupt() -> None:
    with pytest.raises(CorruptFileError):
        image.decode_image(b"<html>404 Not Found</html>\n", "page.png")


def test_valid_header_with_garbage_body_is_corrupt() -> None:
    data = bytearray(_encode(Image.effect_noise((32, 32), 40).convert("RGB"), "JPEG"))
    data[200:] = bytes(len(data) - 200)  # keep the header, zero the entropy-coded data and EOI
    with pytest.raises(CorruptFileError):
        image.decode_image(bytes(data), "zeroed.jpg")


def test_decompression_bomb_is_refused_before_decoding() -> None:
    data = _encode(Image.new("RGB", (20, 20), (1, 2, 3)), "PNG")
    with pytest.raises(CorruptFileError) as info:
        image.decode_image(data, "bomb.png", max_pixels=100)
    assert "decompression bomb" in info.value.reason
    assert "20x20" in info.value.reason
    # Exactly at the limit is fine.
    assert image.decode_image(_encode(Image.new("RGB", (10, 10)), "PNG"), max_pixels=100).size == (10, 10)


def test_content_decides_not_the_extension() -> None:
    data = _encode(_two_tone(), "PNG")
    out = image.decode_image(data, "really_a_png.jpg")
    assert out.size == (40, 20) and _px(out, 2, 2) == (255, 0, 0)


def test_load_image_reads_files_and_reports_missing_ones(tmp_path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(_encode(_two_tone(), "PNG"))
    assert image.load_image(str(path), "a.png").size == (40, 20)
    with pytest.raises(CorruptFileError) as info:
        image.load_image(str(tmp_path / "gone.png"), "gone.png")
    assert info.value.reason == "file disappeared after listing" and info.value.name == "gone.png"
    with pytest.raises(CorruptFileError) as info:
        image.load_image(str(tmp_path), "folder")
    assert "folder" in info.value.reason


def test_load_image_applies_the_pixel_limit(tmp_path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(_encode(Image.new("RGB", (20, 20)), "PNG"))
    with pytest.raises(CorruptFileError, match="decompression bomb"):
        image.load_image(str(path), max_pixels=399)


@pytest.mark.parametrize(
    ("name", "ext"),
    [("a/b/IMG.JPG", "jpg"), ("x.tar.gz", "gz"), ("noext", ""), ("dir.d/noext", ""), (".hidden", "hidden")],
)
def test_extension(name: str, ext: str) -> None:
    assert formats.extension(name) == ext
