"""Decoding real-world images into clean RGB, the one way every phase sees pixels.

Applies EXIF orientation (in place: no copy of the decoded image); converts CMYK, 16-bit, palette,
greyscale and alpha images to 8-bit RGB; uses the first frame of multi-frame GIF/TIFF; refuses images
above a pixel limit (decompression bombs) before decoding them. Every failure is a
:class:`CorruptFileError` with a short reason. :func:`decode_image` is the full decode (embed, export,
pretag); :func:`check_image` is the check phase's: the same verdict from a DCT-scaled JPEG decode, plus
libjpeg's warnings about damaged compressed data.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from kurate.errors import CorruptFileError

#: Default pixel limit: Pillow's own decompression-bomb error threshold (2 x MAX_IMAGE_PIXELS).
DEFAULT_MAX_PIXELS = 178_956_970


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr8 = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


#: The check decodes JPEGs DCT-scaled (1/2, 1/4, 1/8) down to this short side (not below).
CHECK_MIN_EDGE = 64
#: ``info`` key of :func:`check_image`'s result: the file's (width, height) from its header.
HEADER_SIZE = "kurate.header_size"
#: ``info`` key of :func:`check_image`'s result: the full-size upright (width, height), i.e. the size
#: :func:`decode_image` returns (the header's, turned as the EXIF orientation turns the picture).
UPRIGHT_SIZE = "kurate.upright_size"
#: Reason prefix of a JPEG whose compressed data libjpeg found damaged (the stricter check).
DAMAGED_JPEG = "damaged JPEG data"

#: EXIF orientations whose transform swaps width and height.
_TURNED = frozenset((5, 6, 7, 8))

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _open(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Open (header only) and refuse bombs before any pixel is decoded."""
    if not data:
        raise CorruptFileError(name, "empty file (0 bytes)")
    # Our own (configurable) limit replaces Pillow's global one; it is checked here, from the header.
    Image.MAX_IMAGE_PIXELS = None
    img: Image.Image = Image.open(io.BytesIO(data))
    width, height = img.size
    if width * height > max_pixels:
        raise CorruptFileError(
            name, f"decompression bomb: {width}x{height} pixels exceeds the limit of {max_pixels}"
        )
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    return img


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 when none), read as ``ImageOps.exif_transpose`` reads it."""
    return int(img.getexif().get(ExifTags.Base.Orientation, 1) or 1)


def _decoded(name: str, fn: Callable[[], Image.Image]) -> Image.Image:
    """Run a decode, turning every failure into a :class:`CorruptFileError` with a short reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return fn()
    except CorruptFileError:
        raise
    except UnidentifiedImageError:
        raise CorruptFileError(name, "not a readable image (unknown or damaged format)") from None
    except Image.DecompressionBombError as exc:
        raise CorruptFileError(name, f"decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, IndexError, TypeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptFileError(name, f"cannot decode image: {msg}") from None


def _load_upright(img: Image.Image) -> Image.Image:
    img.load()
    # In place: exif_transpose's default returns a full copy even when there is nothing to rotate.
    ImageOps.exif_transpose(img, in_place=True)
    return _to_rgb(img)


def decode_image(
    data: bytes, name: str = "", max_pixels: int = DEFAULT_MAX_PIXELS, reduce_to: int = 0
) -> Image.Image:
    """Fully decode ``data`` into an upright 8-bit RGB image, or raise :class:`CorruptFileError`.

    ``reduce_to > 0`` lets a JPEG decode DCT-scaled (1/2 to 1/8, libjpeg's ``draft``) while both sides
    stay >= ``reduce_to`` pixels: faster, but not the same pixels as a full decode then resize.
    """

    def run() -> Image.Image:
        img = _open(data, name, max_pixels)
        if reduce_to > 0 and img.format == "JPEG":
            img.draft(img.mode, (reduce_to, reduce_to))
        return _load_upright(img)

    return _decoded(name, run)


def _check_scale(width: int, height: int) -> int:
    """The check's DCT scale denominator (1, 2, 4 or 8): the largest keeping the short side >= the floor."""
    short = min(width, height)
    scale = 8
    while scale > 1 and short // scale < CHECK_MIN_EDGE:
        scale //= 2
    return scale


def _check_jpeg(
    img: Image.Image, data: bytes, name: str, max_pixels: int, strict_jpeg: bool, orientation: int
) -> Image.Image:
    """:func:`check_image` for a JPEG: DCT-scaled, through simplejpeg when strict (else Pillow's draft)."""
    scale = _check_scale(*img.size)
    if strict_jpeg and img.mode in ("RGB", "L"):
        fast = _strict_jpeg(data, name, max_pixels, img.size, scale)
        if fast is not None:
            out = Image.fromarray(fast, "RGB")
            method = _TRANSPOSE.get(orientation)
            return out.transpose(method) if method is not None else out
    if scale > 1:
        img.draft(img.mode, (img.width // scale, img.height // scale))
    return _load_upright(img)


def check_image(
    data: bytes, name: str = "", max_pixels: int = DEFAULT_MAX_PIXELS, *, strict_jpeg: bool = True
) -> Image.Image:
    """The check phase's decode: :func:`decode_image`'s verdict as cheaply as it can be had.

    Every pixel must be decoded to know a file is whole, but a JPEG's pixels need not be transformed
    back to full size: JPEGs are decoded DCT-scaled (1/2 to 1/8, :func:`_check_scale`; the same verdict
    as a full decode, pinned on a corrupt corpus by the tests) and the upright RGB image comes back at
    that size; other formats are decoded whole. With ``strict_jpeg`` the JPEG is decoded by
    libjpeg-turbo through simplejpeg, which reports libjpeg's "corrupt data" warnings that Pillow
    hides: a JPEG whose compressed scan is damaged (lost or garbled bytes, a stray end marker) is
    reported as ``damaged JPEG data: <libjpeg's message>``. A file Pillow rejects keeps Pillow's
    reason; a JPEG simplejpeg cannot handle at all (unusual colour spaces, odd markers) gets Pillow's
    verdict alone. ``image.info["kurate.header_size"]`` holds the file's own (width, height), before
    scaling and EXIF rotation, as the header states it; ``image.info["kurate.upright_size"]`` the
    full-size upright (width, height), :func:`decode_image`'s size.
    """

    def run() -> Image.Image:
        img = _open(data, name, max_pixels)
        size = img.size
        if img.format != "JPEG":
            out = _load_upright(img)
            upright = out.size  # decoded whole
        else:
            orientation = _orientation(img)
            out = _check_jpeg(img, data, name, max_pixels, strict_jpeg, orientation)
            upright = (size[1], size[0]) if orientation in _TURNED else size
        out.info[HEADER_SIZE] = size
        out.info[UPRIGHT_SIZE] = upright
        return out

    return _decoded(name, run)


def _strict_jpeg(data: bytes, name: str, max_pixels: int, size: tuple[int, int], scale: int) -> Any:
    """RGB pixels (numpy, DCT-scaled) from simplejpeg in strict mode, or None to fall back to Pillow.

    Raises :class:`CorruptFileError` for damage: Pillow's own verdict first (so what Pillow rejects
    keeps its reason), else libjpeg's warning when it came from the compressed data after a clean
    header (junk between header markers, which libjpeg also warns about, is harmless).
    """
    try:
        import simplejpeg
    except ImportError:  # pragma: no cover - a core dependency; the check still works without it
        return None
    # Exactly 1/scale, as Pillow's draft below: the largest reduction keeping at least these sizes.
    kw = {"min_width": -(-size[0] // scale), "min_height": -(-size[1] // scale), "min_factor": scale}
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True, **kw)
    except ValueError as exc:
        warning = str(exc).splitlines()[0] if str(exc) else "unknown"
    # Damaged or merely unusual: Pillow's verdict first.
    img = _open(data, name, max_pixels)
    if scale > 1:
        img.draft(img.mode, (img.width // scale, img.height // scale))
    img.load()
    try:
        simplejpeg.decode_jpeg_header(data, strict=True)
        simplejpeg.decode_jpeg(data, colorspace="RGB", strict=False, **kw)
    except ValueError:
        return None  # a header warning or an error simplejpeg cannot get past: Pillow's verdict (clean)
    raise CorruptFileError(name, f"{DAMAGED_JPEG}: {warning}")


def load_image(path: str, name: str = "", max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read and decode an image file (see :func:`decode_image`)."""
    from kurate.io import storage

    try:
        data = storage.read_bytes(path)
    except FileNotFoundError:
        raise CorruptFileError(name or path, "file disappeared after listing") from None
    except IsADirectoryError:
        raise CorruptFileError(name or path, "is a folder, not a file") from None
    return decode_image(data, name or path, max_pixels)
