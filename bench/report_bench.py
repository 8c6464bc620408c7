"""Report benchmark: the report for 100k embeddings (d=32, 10% selected) vs the naive full-matrix way.

kurate computes every report statistic in blocks (at most 32 MiB of distances at a time) under the
``memory_requirement_in_GB`` cap (default 2 GiB: a 23,170-point subsample for the histograms). The
baselines compute the same figures on the same points the classic way: the whole distance matrix with
``sklearn.metrics.pairwise_distances`` then ``np.histogram``, and ``pairwise_distances_argmin_min`` for
the nearest selected sample. Peak memory is what ``tracemalloc`` sees (numpy and sklearn allocations).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kurate.io.filelist import FileList
from kurate.outputs import report
from kurate.outputs.inputs import RunInputs
from kurate.selection.coreset import normalize

FULL = {"n": 100_000, "d": 32, "k": 10_000, "gb": 2.0}
QUICK = {"n": 20_000, "d": 32, "k": 2_000, "gb": 0.25}


def _measure(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, seconds, peak GB traced)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 1e9
    tracemalloc.stop()
    return out, dt, peak


def _data(n: int, d: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((200, d))
    x = centers[rng.integers(0, 200, n)] + 0.35 * rng.standard_normal((n, d))
    sel = np.sort(rng.choice(n, size=k, replace=False))
    return normalize(x.astype(np.float32)), sel


def _naive_histogram(xs: np.ndarray, bins: int) -> np.ndarray:
    from sklearn.metrics import pairwise_distances

    dm = pairwise_distances(xs)  # the full m x m matrix
    counts, _ = np.histogram(dm, bins=bins, range=(0.0, 2.0))
    counts[0] -= len(xs)  # the diagonal
    return counts // 2  # each pair twice


def _naive_nearest(xq: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import pairwise_distances_argmin_min

    return pairwise_distances_argmin_min(xq, xs)


def _full_report(x: np.ndarray, sel: np.ndarray, gb: float) -> float:
    """Seconds for report.build (statistics, plots, HTML) on a synthetic run (thumbnails unreadable)."""
    n = len(x)
    names = [f"img_{i:06d}.jpg" for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        root = str(Path(tmp) / "in")
        inputs = RunInputs(
            files=FileList(root=root, names=names),
            clean=FileList(root=root, names=names),
            corrupt=FileList(root=root, names=[], columns={"reason": []}),
            duplicates=FileList(root=root, names=[], columns={"duplicate_of": []}),
            selection=FileList(root=root, names=[names[i] for i in sel], extra={"normalized": True}),
            emb_names=names,
            embeddings=x,
            emb_meta={"dim": x.shape[1]},
        )
        sel_set = set(sel.tolist())
        lists = report.Lists(
            [], [], [names[i] for i in range(n) if i not in sel_set], [names[i] for i in sel]
        )
        summary = {
            "counts": {
                "available": n,
                "corrupt": 0,
                "duplicate": 0,
                "embedded": n,
                "selected": len(sel),
                "removed": n - len(sel),
            },
            "selection": {"method": "random", "selected": len(sel)},
        }
        t0 = time.perf_counter()
        report.build(str(Path(tmp) / "run"), inputs, {"memory_requirement_in_GB": gb}, summary, lists)
        return time.perf_counter() - t0


def run(quick: bool = False) -> str:
    """Measure and return the markdown section."""
    cfg = QUICK if quick else FULL
    n, d, k, gb = cfg["n"], cfg["d"], cfg["k"], cfg["gb"]
    logging.getLogger("kurate.outputs.report").setLevel(logging.ERROR)  # no thumbnails exist: quiet
    load0 = os.getloadavg()[0]
    x, sel = _data(n, d, k)
    m = report.max_points(gb)
    rng = np.random.default_rng(1)
    sub = x[report.seeded_subset(n, m, rng)]
    elems = report.block_elems(gb)

    ours_h, t_ours_h, mem_ours_h = _measure(lambda: report.pair_histogram(sub, 100, 2.0, elems))
    base_h, t_base_h, mem_base_h = _measure(lambda: _naive_histogram(sub, 100))
    hist_diff = int(np.abs(ours_h - base_h).sum())

    rest = np.setdiff1d(np.arange(n), sel)
    q = rest[report.seeded_subset(len(rest), m * m // k, rng)]
    (d_ours, _), t_ours_nn, _ = _measure(lambda: report.nearest(x[q], x[sel], max_elems=elems))
    (_, d_base), t_base_nn, _ = _measure(lambda: _naive_nearest(x[q], x[sel]))
    nn_agree = float(np.mean(np.abs(d_ours - d_base) < 1e-3))

    stats, t_stats, mem_stats = _measure(lambda: report.compute_statistics(x, sel, gb, "normalized"))
    t_full = _full_report(x, sel, gb)

    pairs = m * (m - 1) // 2
    load1 = os.getloadavg()[0]
    lines = [
        f"## Report statistics ({n:,} embeddings, d={d}, {k:,} selected, memory_requirement_in_GB={gb:g})",
        "",
        f"The histograms use a seeded {m:,}-point subsample ({pairs:,} pairs, the cap's matrix); the",
        f"coverage and example search runs {len(q):,} removed samples against the {k:,} selected. Baselines:",
        "the same figures on the same points the classic way, measured in this run.",
        "",
        "| step | kurate | baseline | baseline method | speed-up |",
        "|---|---|---|---|---|",
        f"| pairwise-distance histogram | {t_ours_h:.2f} s | {t_base_h:.2f} s | sklearn `pairwise_distances` "
        f"(full {m:,}² matrix) + `np.histogram` | {t_base_h / t_ours_h:.1f}x |",
        f"| nearest selected sample | {t_ours_nn:.2f} s | {t_base_nn:.2f} s | sklearn "
        f"`pairwise_distances_argmin_min` | {t_base_nn / t_ours_nn:.1f}x |",
        f"| all report statistics (`compute_statistics`) | {t_stats:.2f} s | | | |",
        f"| **whole report** (statistics, 6 plots, HTML) | **{t_full:.2f} s** | | | |",
        "",
        f"Peak traced memory of the histogram: kurate {mem_ours_h:.2f} GB (blocks of "
        f"{report.BLOCK_BYTES >> 20} MiB), the full matrix {mem_base_h:.2f} GB; all statistics "
        f"{mem_stats:.2f} GB. (sklearn's chunked nearest search allocates outside tracemalloc's view.)",
        "",
        f"Agreement: histogram counts differ by {hist_diff:,} of {pairs:,} pairs (float32 values at bin "
        "edges); "
        f"nearest-selected distances agree within 1e-3 for {nn_agree:.1%} of queries. Coverage radius "
        f"{stats.coverage_radius:.4f} ({'exact' if stats.coverage_exact else 'sampled'}). Machine load "
        f"average {load0:.1f} at the start, {load1:.1f} at the end ({os.cpu_count()} cores, shared).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick=True))
