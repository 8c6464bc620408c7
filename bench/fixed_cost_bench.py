"""Fixed cost of a tiny run: ``kurate`` on 20 small images vs ``lightly-embed`` on the same folder.

On a tiny input nearly all of the wall time is fixed cost: starting processes, importing torch and the
pipeline machinery, building the model, writing outputs and exiting. Both commands as in
``pipeline_bench`` (same checkpoint and settings), alternated; the share of kurate's wall time outside
its phases' own work (the phase durations of report.json) is the overhead.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import pipeline_bench as pb  # noqa: E402


def run(quick: bool = False, rounds: int | None = None) -> str:
    from tests import jpeg_corpus as jc

    rounds = rounds or (1 if quick else 3)
    tmp = Path(tempfile.mkdtemp(prefix="kurate-fixed-bench-"))
    try:
        images = tmp / "images"
        sizes = [(96 + 8 * (i % 5), 72 + 8 * (i % 3)) for i in range(20)]
        jc.write_all(images, jc.photo_jpegs(sizes, seed=5))
        ckpt = tmp / "m.ckpt"
        pb._checkpoint(ckpt)
        rows, ratios, shares = [], [], []
        for r in range(1, rounds + 1):
            t_l, _ = pb.run_lightly(images, ckpt, tmp / f"lightly{r}")
            c_l = pb.LAST_CPU[0]
            t_k, run_dir = pb.run_kurate(images, ckpt, tmp / f"kurate{r}")
            c_k = pb.LAST_CPU[0]
            work = sum(pb.phase_times(run_dir).values())
            ratios.append(t_k / t_l)
            shares.append(1 - work / t_k)
            rows.append(
                f"| {r} | {t_l:.1f} | {t_k:.1f} | {t_k / t_l:.2f} | {c_l:.1f} | {c_k:.1f} | {work:.1f} |"
                f" {1 - work / t_k:.0%} |"
            )
        return "\n".join(
            [
                "## Fixed cost of a tiny run (20 small JPEGs)",
                "",
                "Baseline: `lightly-embed` on the same 20 files (its own start-up, model build, embedding,"
                " exit). Ours: `kurate` (every phase through kfp.local).",
                "",
                "| round | lightly-embed s | kurate s | wall ratio | lightly CPU s | kurate CPU s |"
                " kurate phases' work s | outside the work |",
                "|---|---|---|---|---|---|---|---|",
                *rows,
                "",
                f"Median ratio kurate / lightly-embed: **{statistics.median(ratios):.2f}**; median share of"
                f" kurate's wall time outside its phases: {statistics.median(shares):.0%}.",
                "",
            ]
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
