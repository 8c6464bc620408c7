"""Decoding real-world images into clean RGB, the one way every phase sees pixels.

Applies EXIF orientation; converts CMYK, 16-bit, palette, greyscale and alpha images to 8-bit RGB;
uses the first frame of multi-frame GIF/TIFF; refuses images above a pixel limit (decompression
bombs) before decoding them. Every failure is a :class:`CorruptFileError` with a short reason.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kurate.errors import CorruptFileError

#: Default pixel limit: Pillow's own decompression-bomb error threshold (2 x MAX_IMAGE_PIXELS).
DEFAULT_MAX_PIXELS = 178_956_970

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp", "ppm", "pgm")
VIDEO_EXTENSIONS = ("mp4", "mov", "avi", "mkv", "webm", "m4v")


def extension(name: str) -> str:
    """Lower-case extension without the dot ('' if none)."""
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base else ""


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
    from kurate import storage

    try:
        data = storage.read_bytes(path)
    except FileNotFoundError:
        raise CorruptFileError(name or path, "file disappeared after listing") from None
    except IsADirectoryError:
        raise CorruptFileError(name or path, "is a folder, not a file") from None
    return decode_image(data, name or path, max_pixels)


def iter_samples(
    files: Any, rows: Sequence[int], max_pixels: int = DEFAULT_MAX_PIXELS
) -> Iterator[tuple[int, Any, str]]:
    """``(row, upright RGB PIL image or None, reason)`` for ``rows`` of the file list ``files``.

    Images are decoded one by one, then video frames from their video, one pass per video (only the
    listed frames, stopping after the last). A video listed by its file name (ingest could not expand it
    into frames) gets the reason it cannot be opened. Nothing here is fatal: a sample that cannot be
    decoded comes back as None with its reason.
    """
    from kurate import filelist, video

    videos = files.columns.get("video") or [""] * len(files)
    frames = files.columns.get("frame") or [""] * len(files)
    by_video: dict[str, dict[int, int]] = {}
    for r in rows:
        if videos[r] and frames[r]:
            by_video.setdefault(videos[r], {})[int(frames[r])] = r
            continue
        name = files.names[r]
        uri = filelist.sample_uri(files.root, name)
        if videos[r]:
            yield r, None, _unopenable_reason(uri)
            continue
        try:
            yield r, load_image(uri, name, max_pixels), ""
        except CorruptFileError as exc:
            yield r, None, exc.reason
        except OSError as exc:
            yield r, None, f"cannot read file: {exc.strerror or exc}"
    for vid, wanted in sorted(by_video.items()):
        try:
            for index, rgb, reason in video.iter_selected_rgb(
                filelist.sample_uri(files.root, vid), set(wanted)
            ):
                yield wanted[index], (Image.fromarray(rgb, "RGB") if rgb is not None else None), reason
        except CorruptFileError as exc:
            for r in wanted.values():
                yield r, None, exc.reason


def _unopenable_reason(uri: str) -> str:
    """Why a video listed by its file name gives no frames."""
    from kurate import video

    try:
        with video.open_video(uri):
            return "video holds no usable frames"
    except CorruptFileError as exc:
        return exc.reason
