"""Embed phase: one feature vector per clean sample (torch + lightly), or precomputed embeddings.

The artifact keeps the raw (unnormalised) embeddings in a binary, memory-mappable form plus the
filenames; the Lightly CSVs are written by export.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from kurate import embeddings_io, filelist, media, sharding, storage
from kurate.errors import KurateError
from kurate.phases import _entry
from kurate.timing import timed

log = logging.getLogger("kurate.embed")


def _from_precomputed(files: filelist.FileList, csv_uri: str) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    names, x, _labels = embeddings_io.read_lightly_csv(csv_uri)
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in files.names if n not in index]
    if missing:
        raise KurateError(
            f"embeddings file {csv_uri} has no row for {len(missing)} input file(s), e.g. {missing[:3]}"
        )
    rows = np.fromiter((index[n] for n in files.names), dtype=np.int64, count=len(files.names))
    meta = {"source": f"precomputed: {csv_uri}", "dim": int(x.shape[1]), "failed": []}
    return list(files.names), np.ascontiguousarray(x[rows], dtype=np.float32), meta


@timed("embed", "embeddings_out")
def run_embed(
    clean_in: str, embeddings_out: str, config: dict[str, Any], shard_index: int = 0, shard_count: int = 1
) -> dict[str, Any]:
    """Phase function: embed every sample of the clean list into ``embeddings_out``.

    With ``shard_count > 1`` only shard ``shard_index`` of the list is embedded (a contiguous range,
    see :mod:`kurate.sharding`); the shards are merged by :func:`kurate.sharding.merge_embeddings`.
    """
    files = filelist.read(clean_in)
    if not files.names:
        raise KurateError("no valid sample left to embed (all inputs are corrupt or duplicates)")
    shard = None
    if shard_count != 1 or shard_index != 0:
        shard = sharding.shard_meta(len(files), shard_index, shard_count)
        files = sharding.shard_filelist(files, shard_index, shard_count)
    if config.get("embeddings"):
        names, x, meta = _from_precomputed(files, str(config["embeddings"]))
    else:
        from kurate import embedding  # torch is imported only when we really embed

        lc = config.get("lightly") or {}
        model = lc.get("model") or {}
        loader = lc.get("loader") or {}
        result = embedding.embed_files(
            files,
            model_name=str(model.get("name", "resnet-18")),
            width=float(model.get("width", 1.0)),
            num_ftrs=int(model.get("num_ftrs", 32)),
            out_dim=int(model.get("out_dim", 128)),
            input_size=int((lc.get("collate") or {}).get("input_size", 64)),
            batch_size=int(loader.get("batch_size", 16)),
            num_workers=int(loader.get("num_workers", -1)),
            checkpoint=str(config.get("checkpoint") or ""),
            pre_trained=bool(lc.get("pre_trained", True)),
            seed=int(lc.get("seed", 1)),
            max_pixels=int(config.get("max_image_pixels", media.DEFAULT_MAX_PIXELS)),
        )
        names, x = list(result.names), result.embeddings
        meta = {
            "source": result.weights_source,
            "model": dict(model),
            "input_size": int((lc.get("collate") or {}).get("input_size", 64)),
            "device": result.device,
            "images_per_second": result.images_per_second,
            "compute_efficiency": result.compute_efficiency,
            "failed": [[n, r] for n, r in result.failed],
            "dim": int(x.shape[1]) if x.ndim == 2 else 0,
        }
        if config.get("checkpoint"):  # provenance for the report: exactly which weights embedded this
            meta["checkpoint"] = str(config["checkpoint"])
            meta["checkpoint_sha256"] = hashlib.sha256(
                storage.read_bytes(str(config["checkpoint"]))
            ).hexdigest()
    meta["root"] = files.root
    if shard is not None:
        meta["shard"] = shard
    embeddings_io.write_embeddings(embeddings_out, names, x, meta)
    log.info("embedded %d sample(s), dimension %d (%s)", len(names), meta["dim"], meta["source"])
    return meta


def main(argv: Sequence[str]) -> int:
    """``python -m kurate.phases.embed --clean-in P --embeddings-out P [--shard-index I --shard-count N]``."""
    a = _entry.parse(
        argv,
        __doc__ or "",
        ["clean_in"],
        ["embeddings_out"],
        options={
            "shard_index": (int, 0, "embed only this shard (0-based)"),
            "shard_count": (int, 1, "shards"),
        },
    )
    cfg = _entry.load_json_arg(a.config)
    return _entry.run_main(lambda: run_embed(a.clean_in, a.embeddings_out, cfg, a.shard_index, a.shard_count))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
