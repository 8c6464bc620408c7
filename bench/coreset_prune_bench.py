"""Pruned vs brute-force k-center greedy: the exact pruned step where it pays, never a loss where not.

``kurate.selection.coreset.coreset`` with ``KURATE_CORESET_PRUNE=off`` (every step reads all N x d
embeddings: the baseline) vs the default ``auto`` (the run times both kinds of step and keeps the
faster; see ``_Pruner``), on data shaped like real embedding sets: clustered (d=128), near-duplicate
heavy (d=32), unclustered (d=32), and a small k. Alternated per round in this process; the ratio is the
median of per-round ratios auto / off. The picks must be identical.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

import numpy as np

FULL = [
    ("clustered, d=128", {"n": 100_000, "d": 128, "clusters": 300, "spread": 0.3, "k": 4000}),
    ("near-duplicate heavy, d=32", {"n": 200_000, "d": 32, "clusters": 2000, "spread": 0.02, "k": 4000}),
    ("unclustered (normal), d=32", {"n": 100_000, "d": 32, "clusters": 0, "spread": 0.0, "k": 2000}),
    ("small k, clustered d=128", {"n": 100_000, "d": 128, "clusters": 300, "spread": 0.3, "k": 100}),
]
QUICK = [
    ("clustered, d=128", {"n": 20_000, "d": 128, "clusters": 100, "spread": 0.3, "k": 600}),
    ("unclustered (normal), d=32", {"n": 20_000, "d": 32, "clusters": 0, "spread": 0.0, "k": 300}),
]


def make(p: dict, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if not p["clusters"]:
        return rng.standard_normal((p["n"], p["d"]), dtype=np.float32)
    centres = rng.standard_normal((p["clusters"], p["d"]), dtype=np.float32) * 4
    labels = rng.integers(0, p["clusters"], p["n"])
    return centres[labels] + rng.standard_normal((p["n"], p["d"]), dtype=np.float32) * p["spread"]


def _timed(x: np.ndarray, k: int, mode: str) -> tuple[float, Any]:
    from kurate.selection import coreset

    os.environ[coreset.PRUNE_ENV] = mode
    t0 = time.perf_counter()
    info = coreset.coreset_with_info(x, n_samples=k)
    return time.perf_counter() - t0, info


def _agreement(ref: Any, got: Any) -> str:
    """Identical picks, or how far they are identical and how close the pick distances stay."""
    differ = np.flatnonzero(ref.indices != got.indices)
    if not len(differ):
        return "identical"
    a, b = ref.pick_distances[1:], got.pick_distances[1:]
    rel = float(np.max(np.abs(a - b) / np.maximum(a, 1e-30)))
    return f"first {differ[0]:,} identical; distances within {rel:.0e}"


def run(quick: bool = False) -> str:
    cases = QUICK if quick else FULL
    rounds = 1 if quick else 2
    saved = os.environ.get("KURATE_CORESET_PRUNE")
    lines = [
        "## Coreset: pruned vs brute-force greedy (large k)",
        "",
        "Baseline: `KURATE_CORESET_PRUNE=off` (each pick reads all N x d embeddings). Ours: the default"
        " (`auto`): the run measures plain and pruned steps and keeps the faster. Seconds for the whole"
        f" `coreset_with_info` call; median of {rounds} alternated round(s).",
        "",
        "| data | N | d | k | brute s | auto s | auto / brute | pruned steps | picks vs brute force |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    try:
        for label, p in cases:
            x = make(p)
            ratios, tb, ta, same, pruned = [], [], [], "", 0
            for _ in range(rounds):
                t_off, ref = _timed(x, p["k"], "off")
                t_auto, got = _timed(x, p["k"], "auto")
                pruned = got.pruned_steps
                same = _agreement(ref, got)
                tb.append(t_off)
                ta.append(t_auto)
                ratios.append(t_auto / t_off)
            lines.append(
                f"| {label} | {p['n']:,} | {p['d']} | {p['k']:,} | {statistics.median(tb):.2f} |"
                f" {statistics.median(ta):.2f} | **{statistics.median(ratios):.2f}** | {pruned} | {same} |"
            )
    finally:
        if saved is None:
            os.environ.pop("KURATE_CORESET_PRUNE", None)
        else:
            os.environ["KURATE_CORESET_PRUNE"] = saved
    lines += [
        "",
        "Pruning skips every centre whose radius bound proves its points cannot move to the new pick;"
        " it pays when the data is clustered at the scale of k (few centres reachable), and costs a few"
        " N-length passes over 4-byte arrays per pick where it does not (then `auto` goes back to plain"
        " steps after its trial window). Picks: the same up to float ties: where two candidates' float32"
        " distances agree to the last bits (the expanded-form rounding, ~1e-5 relative), the GEMV over a"
        " subset of rows may round the other way and the two runs continue from equally far picks.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
