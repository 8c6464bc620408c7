"""A measured candidate, not used by kurate: spotting the scan damage libjpeg has nothing to say about.

A flipped bit in a JPEG's Huffman-coded scan desynchronises decoding for a few blocks; the stream then
usually falls back in step and ends where it should, so libjpeg warns about nothing, but the DC
predictor of a component stays wrong: every block after the flip, in MCU (raster) order, is off by
the same amount until the end of the scan. In the check's DCT-scaled picture (one pixel per 8x8
block) that is a staircase-shaped step on the MCU grid: on the MCU row boundary above the onset,
right of its column, and on the next boundary, left of it.

:func:`score` is the best staircase over every onset (MCU row, column): the lesser of a t-statistic
(the step against the spread of the pixel differences along the two boundaries) and the step against
the differences on the neighbouring pixel rows (a natural edge rarely sits exactly on the MCU grid);
both need the four half-rows to agree. ``damaged_jpeg_bench`` measures what it would add to the
default check at the threshold just above the highest score of the clean sets (optimistic: the
threshold is set by the very files it is checked on), and which clean files score highest.
"""

from __future__ import annotations

import io

import numpy as np

NMIN = 4  # columns each side of the onset (onsets nearer a side are not looked for)
T_SCALE = 5.0  # t-statistic that counts as 1
R_SCALE = 3.0  # step / neighbouring differences that counts as 1


def picture(data: bytes) -> tuple[np.ndarray, int, int] | None:
    """The check's DCT-scaled RGB picture and the MCU's width and height in its pixels (None: not a JPEG)."""
    import simplejpeg
    from PIL import Image

    from kurate.media import image

    img = Image.open(io.BytesIO(data))
    if img.format != "JPEG" or not getattr(img, "layer", None):
        return None
    w, h = img.size
    scale = 8
    while scale > 1 and min(w, h) // scale < image.CHECK_MIN_EDGE:
        scale //= 2
    try:
        px = simplejpeg.decode_jpeg(
            data,
            colorspace="RGB",
            strict=False,
            min_width=-(-w // scale),
            min_height=-(-h // scale),
            min_factor=scale,
        )
    except ValueError:
        return None
    hmax = max(layer[1] for layer in img.layer)
    vmax = max(layer[2] for layer in img.layer)
    return px, max(1, 8 * hmax // scale), max(1, 8 * vmax // scale)


def _half_means(v: np.ndarray, splits: np.ndarray, width: int) -> tuple[np.ndarray, ...]:
    """Per boundary row and split column: left/right means, sums of squares and counts."""
    zero = np.zeros((v.shape[0], 1, 3), np.float32)
    cum = np.concatenate([zero, np.cumsum(v, axis=1)], axis=1)
    cum2 = np.concatenate([zero[..., 0], np.cumsum((v * v).sum(-1), axis=1)], axis=1)
    n0 = splits.astype(np.float32)
    n1 = (width - splits).astype(np.float32)
    left, right = cum[:, splits], cum[:, width : width + 1] - cum[:, splits]
    left2, right2 = cum2[:, splits], cum2[:, width : width + 1] - cum2[:, splits]
    return left / n0[:, None], right / n1[:, None], left2, right2, n0, n1


def score(data: bytes) -> float:
    """The best DC-offset staircase of a JPEG's check picture (0.0 when there is too little to judge)."""
    got = picture(data)
    return 0.0 if got is None else score_picture(*got)


def score_picture(px: np.ndarray, mw: int, mh: int) -> float:
    """:func:`score` of a decoded check picture whose MCU is ``mw`` x ``mh`` of its pixels."""
    rows, cols = px.shape[0] // mh, px.shape[1] // mw
    if rows < 4 or cols < 2 * NMIN:
        return 0.0
    p = px[: rows * mh, : cols * mw].astype(np.float32)
    v = p[1:] - p[:-1]  # pixel row boundaries; MCU boundary r is pixel boundary r * mh - 1
    splits = np.arange(NMIN, cols - NMIN + 1) * mw
    lm, rm, l2, r2, n0, n1 = _half_means(v, splits, cols * mw)
    r = np.arange(1, rows - 1)
    top, low = r * mh - 1, (r + 1) * mh - 1  # step right of the onset on top, left of it on low
    a, b, c, d = rm[top], lm[top], lm[low], rm[low]
    step = (a - b + c - d) / 2
    s2 = (step * step).sum(-1)
    agree = np.minimum.reduce(
        [(x * step).sum(-1) / np.maximum(s2, 1e-9) for x in (a - b, c - d, a - d, c - b)]
    )
    within = (
        (r2[top] - n1 * (a * a).sum(-1))
        + (l2[top] - n0 * (b * b).sum(-1))
        + (l2[low] - n0 * (c * c).sum(-1))
        + (r2[low] - n1 * (d * d).sum(-1))
    ) / (3 * max(2 * cols * mw - 4, 1))
    t = np.sqrt(s2 / 3 / np.maximum(within * (1 / n0 + 1 / n1), 1e-6))
    last = v.shape[0] - 1
    near = [rm[np.clip(top - 1, 0, last)], rm[np.clip(top + 1, 0, last)], lm[np.clip(low - 1, 0, last)]]
    near += [lm[np.clip(low + 1, 0, last)], b, d]
    ratio = np.sqrt(s2) / np.maximum(np.sqrt(sum((x * x).sum(-1) for x in near) / len(near)), 1e-3)
    best = np.where(agree >= 0.5, np.minimum(t / T_SCALE, ratio / R_SCALE), 0.0)
    return float(best.max())
