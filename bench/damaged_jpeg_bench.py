"""Damaged-JPEG detection: how many damaged files the check reports, and what the stricter check costs.

Corpus (``tests/jpeg_corpus.py``): intact JPEGs made from real photographs, and copies of each damaged
the ways files break: inside the scan (flipped bytes, a zeroed 4 KiB run, an injected end-of-image
marker) and structurally (truncated at 50/90/99 %, the final EOI cut). Clean sets: the intact photos,
every JPEG flavour of ``jpeg_flavours`` and, when ``$KURATE_PILLOW_TEST_IMAGES`` names a copy of
Pillow's ``Tests/images``, every image there that Pillow itself loads without an error.

Rows: the check before issue 17 (Pillow full decode), the check's verdict decode without the stricter
JPEG check (``strict_jpeg=False``: DCT-scaled), and the default check (``strict_jpeg=True``). Time: the
check's per-file decode on the intact photos, interleaved per round; ratios to the strict=False check.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FULL = {"n": 40, "size": (1920, 1080), "copies": 2, "rounds": 3}
QUICK = {"n": 6, "size": (640, 480), "copies": 1, "rounds": 2}


def _verdict(fn, data: bytes, name: str) -> str:
    from kurate.errors import CorruptFileError

    try:
        fn(data, name)
    except CorruptFileError as exc:
        return exc.reason
    return ""


def run(quick: bool = False) -> str:
    import numpy as np

    from kurate.media import image
    from tests import jpeg_corpus as jc

    cfg = QUICK if quick else FULL
    originals = list(jc.photo_jpegs([cfg["size"]] * cfg["n"], seed=7))
    damaged = list(jc.damaged_corpus(originals, seed=8, copies=cfg["copies"]))
    flavours = jc.jpeg_flavours(jc.photos()[0][1], np.random.default_rng(9))
    checks = {
        "before issue 17: Pillow full decode": lambda d, n: image.decode_image(d, n),
        "check, strict_jpeg=False (DCT-scaled)": lambda d, n: image.check_image(d, n, strict_jpeg=False),
        "check, strict_jpeg=True (default)": lambda d, n: image.check_image(d, n, strict_jpeg=True),
    }
    found: Counter[tuple[str, str]] = Counter()
    totals: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {}
    for name, kind, data in damaged:
        totals[kind] += 1
        for label, fn in checks.items():
            why = _verdict(fn, data, name)
            if why:
                found[(label, kind)] += 1
                if label.endswith("(default)"):
                    reasons.setdefault(kind, Counter())[why.split(":", 1)[0]] += 1
    clean_sets = {"intact photos": [(n, d) for n, d in originals], "JPEG flavours": flavours}
    pillow = os.environ.get("KURATE_PILLOW_TEST_IMAGES", "")
    if pillow and Path(pillow).is_dir():
        valid = jc.pillow_valid_images(Path(pillow))
        clean_sets[f"Pillow's Tests/images ({len(valid)} files Pillow loads)"] = [
            (p.name, p.read_bytes()) for p in valid
        ]
    false_pos: dict[tuple[str, str], list[str]] = {}
    for set_name, items in clean_sets.items():
        for name, data in items:
            for label, fn in checks.items():
                why = _verdict(fn, data, name)
                if why:
                    false_pos.setdefault((label, set_name), []).append(f"{name} ({why})")

    # Time: the check's decode per intact photo, strict off / on, interleaved.
    times: dict[str, list[float]] = {}
    for _ in range(cfg["rounds"]):
        for label, fn in checks.items():
            t0 = time.perf_counter()
            for name, data in originals:
                fn(data, name)
            times.setdefault(label, []).append((time.perf_counter() - t0) / len(originals))
    kinds = list(jc.DAMAGE_KINDS)
    lines = [
        "## Damaged-JPEG detection",
        "",
        f"{cfg['n']} intact {cfg['size'][0]}x{cfg['size'][1]} JPEGs (q90) from real photographs, each damaged"
        f" {cfg['copies']}x per kind (seeded). Scan damage: {', '.join(jc.SCAN_DAMAGE)}; structure:"
        f" {', '.join(jc.STRUCTURE_DAMAGE)}. Reported = listed as corrupt, with the reason.",
        "",
        "| check | " + " | ".join(kinds) + " | scan damage | ms/file | ratio |",
        "|---|" + "---|" * (len(kinds) + 3),
    ]
    scan_total = sum(totals[k] for k in jc.SCAN_DAMAGE)
    ref = statistics.median(times["check, strict_jpeg=False (DCT-scaled)"])
    for label in checks:
        cells = [f"{found[(label, k)]}/{totals[k]}" for k in kinds]
        scan = sum(found[(label, k)] for k in jc.SCAN_DAMAGE)
        med = statistics.median(times[label])
        lines.append(
            f"| {label} | " + " | ".join(cells) + f" | **{scan / scan_total:.0%}** | {med * 1000:.1f} |"
            f" {med / ref:.2f} |"
        )
    lines += ["", "False positives (clean files reported corrupt):", ""]
    for set_name, items in clean_sets.items():
        cells = []
        for label in checks:
            fp = false_pos.get((label, set_name), [])
            cells.append(f"{label}: {len(fp)}" + (f" ({'; '.join(fp[:4])})" if fp else ""))
        lines.append(f"- {set_name} ({len(items)} files): " + "; ".join(cells))
    lines += ["", "Reasons given by the default check, by damage kind:", ""]
    for kind, counter in reasons.items():
        lines.append(f"- {kind}: " + ", ".join(f"{r} x{c}" for r, c in counter.most_common()))
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
