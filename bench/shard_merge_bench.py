"""Merge step of sharded embedding: what joining N shards costs compared with copying the artifact once.

Any extra pipeline step must at least read its input and write its output. The baseline is exactly
that for the unsharded artifact: ``read_embeddings`` + ``write_embeddings`` of all rows. kurate's merge
reads N shard artifacts, checks that they tile the list, and writes one; the target is to stay close
to the copy (ratio near 1), so sharding adds only a copy's worth of time to a run.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from kurate.io import embeddings_io, sharding

FULL = {"n": 1_000_000, "d": 32, "shards": 8, "rounds": 4}
QUICK = {"n": 50_000, "d": 32, "shards": 4, "rounds": 2}


def _copy_once(src: str, dst: str) -> None:
    names, x, meta = embeddings_io.read_embeddings(src)
    embeddings_io.write_embeddings(dst, names, x, meta)


def run(quick: bool = False) -> str:
    """Time merge vs one read+write of the same rows; returns a markdown section."""
    p = QUICK if quick else FULL
    n, d, k = p["n"], p["d"], p["shards"]
    tmp = Path(tempfile.mkdtemp(prefix="kurate-bench-merge-"))
    try:
        names = [f"folder/img_{i:08d}.jpg" for i in range(n)]
        x = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
        whole = str(tmp / "whole")
        embeddings_io.write_embeddings(whole, names, x, {"root": "/data", "source": "bench"})
        shard_paths = []
        for i in range(k):
            a, b = sharding.shard_bounds(n, i, k)
            meta = {"root": "/data", "source": "bench", "shard": sharding.shard_meta(n, i, k)}
            path = str(tmp / f"shard-{i}")
            embeddings_io.write_embeddings(path, names[a:b], x[a:b], meta)
            shard_paths.append(path)
        merge_s, copy_s = [], []
        for r in range(p["rounds"]):
            # Alternate which runs first, so neither always gets the warmer page cache.
            for what in ("merge", "copy") if r % 2 == 0 else ("copy", "merge"):
                t0 = time.perf_counter()
                if what == "merge":
                    sharding.merge_embeddings(shard_paths, str(tmp / f"merged-{r}"))
                    merge_s.append(time.perf_counter() - t0)
                else:
                    _copy_once(whole, str(tmp / f"copy-{r}"))
                    copy_s.append(time.perf_counter() - t0)
        got_names, got, _ = embeddings_io.read_embeddings(str(tmp / "merged-0"))
        assert got_names == names and np.array_equal(got, x), "merge changed the embeddings"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    m, c = statistics.median(merge_s), statistics.median(copy_s)
    mb = n * d * 4 / 1e6
    return "\n".join(
        [
            "## Sharded embedding: merge step",
            "",
            f"{n:,} embeddings × {d} (float32, {mb:.0f} MB) in {k} shards; median of {p['rounds']} rounds, "
            "local disk.",
            "",
            "| | seconds | MB/s |",
            "|---|---|---|",
            f"| kurate merge of {k} shards (reads, checks tiling, writes) | {m:.3f} | {mb / m:.0f} |",
            f"| baseline: read + write the unsharded artifact once | {c:.3f} | {mb / c:.0f} |",
            "",
            f"Merge / copy: **{m / c:.2f}×** (target: close to 1; the merge is one copy of the rows).",
        ]
    )


if __name__ == "__main__":
    print(run(quick=True))
