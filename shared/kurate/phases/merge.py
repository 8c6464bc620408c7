"""Merge step of sharded embedding: the shard artifacts, in any order, become one embeddings artifact.

Not a phase of its own in the spec: it joins the embed shards (``--shard-index/--shard-count`` of
``kurate.phases.embed``) before select. On Argo all shard outputs land under one artifact key and
arrive here as one folder; on KFP each shard is its own artifact.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from kurate.io import embeddings_io, sharding, storage
from kurate.phases import _entry


@_entry.reported("merge")
def run_merge(shards_in: Sequence[str], embeddings_out: str) -> dict[str, Any]:
    """Phase function: merge the shards found at ``shards_in`` (shard folders or folders of shards)."""
    paths: list[str] = []
    for p in shards_in:
        if storage.exists(storage.join(p, embeddings_io.META_FILE)):
            paths.append(p)
        else:
            paths.extend(sharding.shard_dirs(p))
    return sharding.merge_embeddings(paths, embeddings_out)


def main(argv: Sequence[str]) -> int:
    """``python -m kurate.phases.merge --shards-in DIR [DIR ...] --embeddings-out PATH``."""
    p = argparse.ArgumentParser(prog="python -m kurate.phases.merge", description=__doc__)
    p.add_argument("--shards-in", nargs="+", required=True, help="shard artifacts, or folders holding them")
    p.add_argument("--embeddings-out", required=True, help="output artifact: the merged embeddings")
    a = p.parse_args(list(argv))
    return _entry.run_main(lambda: run_merge(a.shards_in, a.embeddings_out))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
