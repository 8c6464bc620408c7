"""Damaged-JPEG detection: how many damaged files the check reports, and what the stricter check costs.

Corpus (``tests/jpeg_corpus.py``): intact JPEGs made from real photographs, and copies of each damaged
the ways files break: inside the scan (flipped bytes, a zeroed 4 KiB run, an injected end-of-image
marker) and structurally (truncated at 50/90/99 %, the final EOI cut). Clean sets: the intact photos,
every JPEG flavour of ``jpeg_flavours`` and, when ``$KURATE_PILLOW_TEST_IMAGES`` names a copy of
Pillow's ``Tests/images``, every image there that Pillow itself loads without an error.

Rows: the check before issue 17 (Pillow full decode), the check's verdict decode without the stricter
JPEG check (``strict_jpeg=False``: DCT-scaled), and the default check (``strict_jpeg=True``). Time: the
check's per-file decode on the intact photos, interleaved per round; ratios to the strict=False check.

Then what the default check misses: how many of those files leave the check's DCT-scaled picture
unchanged (no check working on that picture could tell), and how many are visibly wrong at full size;
and what two candidates, not used by kurate, would add: ``jpeg_offset_heuristic`` (a DC-offset
staircase on the MCU grid, at the threshold just above the highest score of the clean files) and
``jpeg_scan_walker`` (the Huffman-coded scan walked with the rules every valid baseline file keeps).
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
sys.path.insert(0, str(ROOT / "bench"))

import jpeg_offset_heuristic as heur  # noqa: E402
import jpeg_scan_walker as walker  # noqa: E402

FULL = {"n": 40, "size": (1920, 1080), "copies": 2, "rounds": 3}
QUICK = {"n": 6, "size": (640, 480), "copies": 1, "rounds": 2}


def _verdict(fn, data: bytes, name: str) -> str:
    from kurate.errors import CorruptFileError

    try:
        fn(data, name)
    except CorruptFileError as exc:
        return exc.reason
    return ""


def _misses(
    damaged: list[tuple[str, str, bytes]], originals: dict[str, bytes], missed: set[str]
) -> dict[str, Counter[str]]:
    """Per scan-damage kind: files the default check passes, unchanged at its scale, visible at full size."""
    import io

    import numpy as np
    from PIL import Image

    out: dict[str, Counter[str]] = {}
    for name, kind, data in damaged:
        if name not in missed:
            continue
        src = originals[name.split("__")[0] + ".jpg"]
        counts = out.setdefault(kind, Counter())
        counts["missed"] += 1
        small, ref = heur.picture(data), heur.picture(src)
        if small is not None and ref is not None and int(np.abs(small[0].astype(int) - ref[0]).max()) <= 2:
            counts["unchanged"] += 1
        try:
            with Image.open(io.BytesIO(data)) as a, Image.open(io.BytesIO(src)) as b:
                diff = np.abs(
                    np.asarray(a.convert("RGB"), dtype=np.int16) - np.asarray(b.convert("RGB"), np.int16)
                )
            visible = bool((diff.max(axis=-1) > 8).mean() >= 0.01)
        except OSError:  # Pillow refuses what libjpeg let through: certainly wrong
            visible = True
        if visible:
            counts["visible"] += 1
    return out


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
    # What the default check misses, and what the DC-offset staircase candidate would add.

    default = "check, strict_jpeg=True (default)"
    missed = {n for n, k, d in damaged if k in jc.SCAN_DAMAGE and not _verdict(checks[default], d, n)}
    misses = _misses(damaged, dict(originals), missed)
    clean_scores = sorted(
        (heur.score(d), n)
        for items in clean_sets.values()
        for n, d in items
        if not _verdict(checks[default], d, n)
    )[::-1]
    threshold = clean_scores[0][0]
    extra = Counter(k for n, k, d in damaged if n in missed and heur.score(d) > threshold)
    pictures = [got for _, data in originals if (got := heur.picture(data)) is not None]
    t0 = time.perf_counter()
    for got in pictures:
        heur.score_picture(*got)
    heur_ms = (time.perf_counter() - t0) / max(1, len(pictures)) * 1000
    # The scan walker: what it adds to the default check, its verdicts on the clean files, its cost.
    walked = Counter(k for n, k, d in damaged if n in missed and walker.check(d))
    walker_fp: list[str] = []
    walker_clean = 0
    for items in clean_sets.values():
        for n, d in items:
            why = walker.check(d)
            if why is not None and not _verdict(checks[default], d, n):
                walker_clean += 1
                if why:
                    walker_fp.append(f"{n} ({why})")
    t0 = time.perf_counter()
    for _, data in originals:
        walker.check(data)
    walker_ms = (time.perf_counter() - t0) / len(originals) * 1000
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
    lines += ["", "Scan damage the default check misses (libjpeg decodes them without a warning):", ""]
    for kind in jc.SCAN_DAMAGE:
        counts = misses.get(kind, Counter())
        if not counts["missed"]:
            lines.append(f"- {kind}: none missed")
            continue
        lines.append(
            f"- {kind}: {counts['missed']} missed; {counts['unchanged']} leave the check's"
            f" DCT-scaled picture unchanged (max 2 levels); {counts['visible']} are visibly"
            " wrong at full size (>= 1 % of pixels off by > 8 levels)"
        )
    scan_found = sum(found[(default, k)] for k in jc.SCAN_DAMAGE)
    with_heur = scan_found + sum(extra.values())
    top = "; ".join(f"{n} {s:.2f}" for s, n in clean_scores[:3])
    lines += [
        "",
        "Candidate, not used: the default check plus a DC-offset staircase on the MCU grid"
        f" (bench/jpeg_offset_heuristic.py), threshold {threshold:.2f} = the highest score of the"
        f" {len(clean_scores)} clean files the default check passes (0 false positives by construction: an"
        " optimistic bound):"
        + "".join(f" {k} {found[(default, k)] + extra[k]}/{totals[k]};" for k in jc.SCAN_DAMAGE)
        + f" scan damage **{with_heur / scan_total:.0%}** (default alone {scan_found / scan_total:.0%});"
        f" its analysis (the check's decode aside) {heur_ms:.2f} ms/file on the intact photos."
        f" Highest clean scores: {top}.",
    ]
    with_walker = scan_found + sum(walked.values())
    lines += [
        "",
        "Candidate, not used: the default check plus the scan walker (bench/jpeg_scan_walker.py, pure"
        " Python; baseline JPEGs):"
        + "".join(f" {k} {found[(default, k)] + walked[k]}/{totals[k]};" for k in jc.SCAN_DAMAGE)
        + f" scan damage **{with_walker / scan_total:.0%}**; {len(walker_fp)} false positives among the"
        f" {walker_clean} clean baseline JPEGs the default check passes"
        + (f" ({'; '.join(walker_fp[:4])})" if walker_fp else "")
        + f"; {walker_ms:.0f} ms/file on the intact photos"
        f" ({walker_ms / (statistics.median(times[default]) * 1000):.0f}x the default check's time).",
    ]
    lines += ["", "Reasons given by the default check, by damage kind:", ""]
    for kind, counter in reasons.items():
        lines.append(f"- {kind}: " + ", ".join(f"{r} x{c}" for r, c in counter.most_common()))
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
