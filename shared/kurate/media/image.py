"""Decoding real-world images into clean RGB, the one way every phase sees pixels.

Applies EXIF orientation; converts CMYK, 16-bit, palette, greyscale and alpha images to 8-bit RGB;
uses the first frame of multi-frame GIF/TIFF; refuses images above a pixel limit (decompression
bombs) before decoding them. Every failure is a :class:`CorruptFileError` with a short reason.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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


def decode_image(data: bytes, name: str = "", max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Fully decode ``data`` into an upright 8-bit RGB image, or raise :class:`CorruptFileError`."""
    if not data:
        raise CorruptFileError(name, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Our own (configurable) limit replaces Pillow's global one; it is checked below, from the
            # header, before any pixel is decoded.
            Image.MAX_IMAGE_PIXELS = None
            img: Image.Image = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise CorruptFileError(
                    name, f"decompression bomb: {width}x{height} pixels exceeds the limit of {max_pixels}"
                )
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return _to_rgb(img)
    except CorruptFileError:
        raise
    except UnidentifiedImageError:
        raise CorruptFileError(name, "not a readable image (unknown or damaged format)") from None
    except Image.DecompressionBombError as exc:
        raise CorruptFileError(name, f"decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, IndexError, TypeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptFileError(name, f"cannot decode image: {msg}") from None


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
