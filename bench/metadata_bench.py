"""Computed metadata on the check's reduced pixels vs on the full decode (what the DCT-scaled check changes).

The check computes Lightly's ``lightly.*`` metadata from the pixels it decodes, and it decodes JPEGs
DCT-scaled (:func:`kurate.media.image.check_image`: 1/8 for HD photos). Width, height and size are exact;
this section measures how far the other values are from the same formulas on the full decode
(:func:`kurate.media.image.decode_image`, what a second decode would cost), and whether they still order
the files the same way (Spearman rank correlation), which is what a THRESHOLD or WEIGHTS strategy on
them relies on.

Corpus (``tests/jpeg_corpus.py``): photos at 1920x1080 and 4000x3000, every fourth one sharp and the
others Gaussian-blurred (radius 1, 2, 4 px at full size) so that sharpness spreads as in a real dataset.
Time: per-file decode + metadata, check's vs full decode, interleaved; ratio to the full decode.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FULL = {"sizes": [(1920, 1080)] * 32 + [(4000, 3000)] * 8, "rounds": 2}
QUICK = {"sizes": [(640, 480)] * 8, "rounds": 1}
BLUR = (0, 1, 2, 4)
VALUES = (
    "lightly.sharpness",
    "lightly.snr",
    "lightly.luminance",
    "lightly.contrast",
    "lightly.uniformRowRatio",
)


def _ranks(xs: list[float]) -> list[float]:
    """Average ranks (ties share theirs), for Spearman's rho."""
    order = sorted(range(len(xs)), key=xs.__getitem__)
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def _spearman(a: list[float], b: list[float]) -> float:
    import numpy as np

    ra, rb = np.array(_ranks(a)), np.array(_ranks(b))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def corpus(sizes: list[tuple[int, int]]) -> list[tuple[str, bytes]]:
    import numpy as np
    from PIL import ImageFilter

    from tests import jpeg_corpus as jc

    photos = jc.photos()
    rng = np.random.default_rng(21)
    out = []
    for i, size in enumerate(sizes):
        img = jc.photo_image(photos[i % len(photos)][1], size, rng)
        radius = BLUR[i % len(BLUR)]
        if radius:
            img = img.filter(ImageFilter.GaussianBlur(radius))
        out.append((f"{i:03d}_{size[0]}x{size[1]}_blur{radius}.jpg", jc.encode_jpeg(img)))
    return out


def run(quick: bool = False) -> str:
    from kurate.media import image, metadata

    cfg = QUICK if quick else FULL
    files = corpus(cfg["sizes"])
    full: dict[str, list[float]] = {k: [] for k in VALUES}
    check: dict[str, list[float]] = {k: [] for k in VALUES}
    exact = True
    t_full: list[float] = []
    t_check: list[float] = []
    for r in range(cfg["rounds"]):
        for name, data in files:
            t0 = time.perf_counter()
            f_img = image.decode_image(data, name)
            f_meta = metadata.image_metadata(f_img, len(data))
            t1 = time.perf_counter()
            c_img = image.check_image(data, name)
            c_meta = metadata.image_metadata(c_img, len(data))
            t2 = time.perf_counter()
            t_full.append(t1 - t0)
            t_check.append(t2 - t1)
            if r:
                continue
            exact &= c_img.info[image.UPRIGHT_SIZE] == f_img.size
            for k in VALUES:
                full[k].append(f_meta[k])
                check[k].append(c_meta[k])
    sizes = sorted({f"{w}x{h}" for w, h in cfg["sizes"]})
    lines = [
        "## Computed metadata: the check's reduced pixels vs the full decode",
        "",
        f"{len(files)} photo JPEGs ({', '.join(sizes)}; sharp and blurred with radius 1/2/4 px), "
        f"`lightly.*` from `check_image` (DCT-scaled, what the check uses) vs from `decode_image` (full). "
        f"Width/height equal the full decode's on every file: {'yes' if exact else 'NO'}.",
        "",
        "| key | median check/full | min–max check/full | Spearman rank correlation |",
        "|---|---:|---:|---:|",
    ]
    for k in VALUES:
        ratios = [c / f for c, f in zip(check[k], full[k], strict=True) if f]
        if ratios:
            spread = f"{min(ratios):.3f}–{max(ratios):.3f}"
            med = f"{statistics.median(ratios):.3f}"
        else:
            spread = med = "n/a (all 0)"
        rho = _spearman(check[k], full[k])
        lines.append(f"| `{k}` | {med} | {spread} | {'n/a (constant)' if rho != rho else f'{rho:.3f}'} |")
    tf, tc = statistics.median(t_full), statistics.median(t_check)
    lines += [
        "",
        f"Per file, decode + metadata: full decode {tf * 1000:.1f} ms, the check's {tc * 1000:.1f} ms "
        f"({tc / tf:.2f}x; median of {cfg['rounds']} interleaved rounds).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
