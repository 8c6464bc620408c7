"""Lightly's computed image metadata (``lightly.*`` keys) from the pixels the check phase decodes.

One pass over one decoded image, no second decode. Definitions (``L`` = the greyscale image as PIL's
``convert("L")`` makes it, ITU-R 601-2 luma ``(299 R + 587 G + 114 B) / 1000`` on 8-bit RGB):

- ``lightly.sharpness``: standard deviation of the 3×3 Laplacian of ``L`` (8 at the centre, -1 around),
  filtered as PIL's ``ImageFilter.Kernel`` does (8-bit result, clipped to [0, 255], the border pixels
  kept) — exactly the formula of Lightly's open-source client (``lightly.api.utils.sharpness``, ≤ 1.1.7).
- ``lightly.snr``: mean / standard deviation of all RGB values, 0 for a constant image (Lightly's
  ``signal_to_noise_ratio``).
- ``lightly.luminance``: mean of ``L`` scaled to [0, 100] (the range Lightly's API gives it).
- ``lightly.contrast``: standard deviation of ``L`` scaled the same way (RMS contrast, in [0, 50]).
- ``lightly.uniformRowRatio``: fraction of pixel rows whose pixels are all the same RGB colour
  (in [0, 1]; a truncated JPEG's grey fill makes it large).
- ``lightly.width``, ``lightly.height``: pixels of the upright image; ``lightly.sizeInBytes``: the file's
  size (empty for a video frame). The check decodes JPEGs DCT-scaled (:func:`kurate.media.image.check_image`):
  it measures the other values on those reduced pixels and sets width and height to the file's full
  upright size (exact).

Where Lightly's formulas are not public (luminance, contrast, uniformRowRatio) these definitions are
kurate's, chosen within the ranges Lightly's API declares, and documented in the README.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The keys, in the order of the metadata CSV's columns.
KEYS = (
    "lightly.width",
    "lightly.height",
    "lightly.sizeInBytes",
    "lightly.sharpness",
    "lightly.snr",
    "lightly.luminance",
    "lightly.contrast",
    "lightly.uniformRowRatio",
)
NUMERIC = set(KEYS)


def _rgb(image: Any) -> np.ndarray:
    """(H, W, 3) uint8 from a PIL image or an array (grey arrays are repeated to three channels)."""
    if hasattr(image, "convert"):
        arr = np.asarray(image.convert("RGB"))
    else:
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def _luma(rgb: np.ndarray) -> np.ndarray:
    """PIL's ``convert("L")``: ``(R*299 + G*587 + B*114 + 500) / 1000`` truncated (its rounding)."""
    r = rgb[:, :, 0].astype(np.uint32)
    g = rgb[:, :, 1].astype(np.uint32)
    b = rgb[:, :, 2].astype(np.uint32)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


#: Lightly's sharpness kernel (``lightly.api.utils.sharpness``): a 3x3 Laplacian, scale 1, offset 0.
_LAPLACIAN = (-1, -1, -1, -1, 8, -1, -1, -1, -1)


def laplacian_std(grey: np.ndarray) -> float:
    """Std of PIL's 3×3 Laplacian filter output (uint8 clipped, border pixels copied from the input)."""
    from PIL import Image, ImageFilter

    out = Image.fromarray(np.ascontiguousarray(grey, dtype=np.uint8), mode="L").filter(
        ImageFilter.Kernel((3, 3), _LAPLACIAN, 1, 0)
    )
    return float(np.std(np.asarray(out), dtype=np.float64))


def image_metadata(image: Any, size_in_bytes: int | None = None) -> dict[str, float]:
    """The ``lightly.*`` metadata of one decoded image (PIL image or (H, W[, 3]) array)."""
    rgb = _rgb(image)
    grey = np.asarray(image.convert("L")) if hasattr(image, "convert") else _luma(rgb)
    mean = float(rgb.mean(dtype=np.float64)) if rgb.size else 0.0
    std = float(rgb.std(dtype=np.float64)) if rgb.size else 0.0
    rows_uniform = 0
    if rgb.shape[0] and rgb.shape[1]:
        rows_uniform = int(np.all(rgb == rgb[:, :1, :], axis=(1, 2)).sum())
    g = grey
    return {
        "lightly.width": float(rgb.shape[1]),
        "lightly.height": float(rgb.shape[0]),
        "lightly.sizeInBytes": float("nan") if size_in_bytes is None else float(size_in_bytes),
        "lightly.sharpness": laplacian_std(grey),
        "lightly.snr": 0.0 if std == 0 else mean / std,
        "lightly.luminance": float(g.mean(dtype=np.float64) / 255.0 * 100.0) if g.size else 0.0,
        "lightly.contrast": float(g.std(dtype=np.float64) / 255.0 * 100.0) if g.size else 0.0,
        "lightly.uniformRowRatio": rows_uniform / rgb.shape[0] if rgb.shape[0] else 0.0,
    }
