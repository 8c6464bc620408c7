"""Pretagging and the scorer: what they add on top of the work any implementation must do.

Three figures, each against a baseline measured in the same run:

- **scorer**: ``kurate.selection.scorer.score_samples`` over a predictions artifact (one JSON line per sample)
  vs just parsing those lines with ``json.loads`` (the floor for anything reading the artifact);
- **Lightly predictions folder**: ``kurate.models.pretag.from_predictions`` (one file per sample, validated,
  thresholded) vs reading every file and ``json.loads`` only;
- **weighted coreset**: ``coreset_with_info(weights=...)`` vs the unweighted coreset on the same points
  (the cost of letting scores steer the selection).
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from kurate.io import predictions as preds_io
from kurate.io.filelist import FileList
from kurate.models import pretag
from kurate.selection.coreset import coreset_with_info
from kurate.selection.scorer import score_samples

FULL = {
    "n_scores": 200_000,
    "n_files": 20_000,
    "coreset": [(100_000, 1_000), (1_000_000, 200)],
    "d": 32,
    "rounds": 4,
}
QUICK = {"n_scores": 20_000, "n_files": 2_000, "coreset": [(10_000, 200)], "d": 32, "rounds": 2}


def _records(n: int, rng: np.random.Generator) -> list[list[dict]]:
    out = []
    for _ in range(n):
        k = int(rng.integers(0, 7))
        out.append(
            [
                {"category_id": int(c), "bbox": [10.5, 20.25, 30.0, 40.0], "score": 0.9}
                for c in rng.integers(0, 5, size=k)
            ]
        )
    return out


def _pair(ours, base, rounds: int) -> tuple[float, float]:
    """Best time of each, the two interleaved (order alternating per round) so neither gets a warmer cache."""
    t_ours, t_base = [], []
    for r in range(rounds):
        for which in ("ours", "base") if r % 2 == 0 else ("base", "ours"):
            t = time.perf_counter()
            (ours if which == "ours" else base)()
            (t_ours if which == "ours" else t_base).append(time.perf_counter() - t)
    return min(t_ours), min(t_base)


def run(quick: bool = False) -> str:
    """Time the three pairs; returns a markdown section."""
    p = QUICK if quick else FULL
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="kurate-bench-pretag-"))
    rows = []
    try:
        # 1. scorer over the artifact vs parsing it
        n = p["n_scores"]
        names = [f"folder/img_{i:08d}.jpg" for i in range(n)]
        recs = _records(n, rng)
        art = str(tmp / "pred")
        preds_io.write(art, names, recs, {"source": "bench", "categories": []})

        def parse_only() -> None:
            with open(Path(art) / preds_io.LINES, encoding="utf-8") as fh:
                for line in fh:
                    json.loads(line)

        ours, base = _pair(
            lambda: score_samples(names, art, "object-frequency", 0.25, 0.9), parse_only, p["rounds"]
        )
        rows.append(("object-frequency scores", f"{n:,} samples", ours, "json.loads of every line", base))

        # 2. Lightly per-sample prediction files vs read + json.loads
        m = p["n_files"]
        task = tmp / "lightly" / "task"
        task.mkdir(parents=True)
        (task / "schema.json").write_text(json.dumps({"task_type": "object-detection", "categories": []}))
        fnames = [f"img_{i:07d}.png" for i in range(m)]
        for name, ps in zip(fnames, recs[:m], strict=True):
            (task / name.replace(".png", ".json")).write_text(
                json.dumps({"file_name": name, "predictions": ps})
            )
        files = FileList(root=str(tmp), names=fnames)
        settings = {
            "source": "predictions",
            "predictions": str(task),
            "score_threshold": 0.5,
            "categories": [],
        }

        def read_only() -> None:
            for name in fnames:
                json.loads((task / name.replace(".png", ".json")).read_bytes())

        ours, base = _pair(lambda: pretag.from_predictions(files, settings), read_only, p["rounds"])
        rows.append(("Lightly predictions folder", f"{m:,} files", ours, "read + json.loads per file", base))

        # 3. weighted vs unweighted coreset
        for k, picks in p["coreset"]:
            x = rng.standard_normal((k, p["d"])).astype(np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            w = 0.9 + 0.1 * rng.random(k)
            ours, base = _pair(
                lambda x=x, w=w, picks=picks: coreset_with_info(x, n_samples=picks, weights=w),
                lambda x=x, picks=picks: coreset_with_info(x, n_samples=picks),
                p["rounds"],
            )
            rows.append(
                ("weighted coreset", f"{k:,}×{p['d']}, {picks:,} picks", ours, "unweighted coreset", base)
            )
            del x
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    lines = [
        "## Pretagging and the object-frequency scorer",
        "",
        f"Best of {p['rounds']} rounds each, kurate and its baseline interleaved in the same process.",
        "",
        "| what | size | kurate | baseline | baseline time | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for what, size, ours, base_name, base in rows:
        lines.append(f"| {what} | {size} | {ours:.3f} s | {base_name} | {base:.3f} s | {ours / base:.2f}× |")
    lines += [
        "",
        "Ratio = kurate / baseline. The baselines are floors: parsing the same JSON, or the unweighted",
        "coreset. The weights add an N-length multiply and argmax in float64 to each pick (2.4 MB more",
        "memory traffic per pick at N=100k): that costs most while the embeddings (12.8 MB there) could",
        "stay in the CPU cache, little at N=1M. "
        f"Median ratio: {statistics.median(r[2] / r[4] for r in rows):.2f}×.",
    ]
    return "\n".join(lines) + "\n"
