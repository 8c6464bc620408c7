"""Sharded embedding: N contiguous shards of the clean list, embedded apart, merged back in order.

The clean file list is split into N contiguous shards, each embedded on its own node, and the shard
artifacts are merged back into one embeddings artifact in the original order.

Shards are contiguous ranges of the (sorted) clean list, so the merge is a concatenation in shard
order and the merged artifact is row for row the one an unsharded embed writes. Each shard records
its place (``meta["shard"]``: index, count, start, stop, total); the merge refuses anything that does
not tile the list exactly (a missing, repeated or foreign shard), so a lost pod can never silently
drop samples.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from kurate.errors import ConfigError, KurateError
from kurate.io import embeddings_io, filelist, storage, timing

log = logging.getLogger("kurate.io.sharding")

#: Upper bound on the shard count (a typo such as 1000 would otherwise start 1000 GPU pods).
MAX_SHARDS = 256


def check_shard_count(count: Any) -> int:
    """``count`` as an int in [1, MAX_SHARDS], or a :class:`ConfigError` naming the setting."""
    if isinstance(count, bool) or not isinstance(count, int | float) or int(count) != count:
        raise ConfigError("embed_shards", f"got {count!r}; allowed: an integer from 1 to {MAX_SHARDS}")
    n = int(count)
    if not 1 <= n <= MAX_SHARDS:
        raise ConfigError("embed_shards", f"got {n}; allowed: an integer from 1 to {MAX_SHARDS}")
    return n


def shard_indices(count: int) -> list[int]:
    """The shard numbers ``0 .. count-1`` (what the pipeline's ParallelFor iterates over)."""
    return list(range(check_shard_count(count)))


def shard_bounds(total: int, index: int, count: int) -> tuple[int, int]:
    """``[start, stop)`` of shard ``index`` of ``count`` over ``total`` rows (contiguous, near-equal)."""
    count = check_shard_count(count)
    if not 0 <= index < count:
        raise ConfigError("shard_index", f"got {index}; allowed: 0 to {count - 1} for {count} shard(s)")
    return index * total // count, (index + 1) * total // count


def shard_filelist(files: filelist.FileList, index: int, count: int) -> filelist.FileList:
    """The rows of ``files`` that shard ``index`` of ``count`` embeds."""
    start, stop = shard_bounds(len(files), index, count)
    return files.subset(range(start, stop))


def shard_meta(total: int, index: int, count: int) -> dict[str, int]:
    """What a shard records about its place, checked by :func:`merge_embeddings`."""
    start, stop = shard_bounds(total, index, count)
    return {"index": index, "count": count, "start": start, "stop": stop, "total": total}


def shard_dirs(parent: str) -> list[str]:
    """The shard artifacts under ``parent`` (every sub-folder with a ``meta.json``), for Argo's fan-in.

    Argo gathers the shard outputs under one artifact-repository key; the order does not matter,
    :func:`merge_embeddings` orders them by their recorded index.
    """
    root = str(storage.local_path(parent))
    found = []
    for dirpath, _dirs, files in os.walk(root):
        if embeddings_io.META_FILE in files:
            found.append(dirpath)
    if not found:
        raise KurateError(f"{parent}: no embedding shards found (no folder with {embeddings_io.META_FILE})")
    return sorted(found)


def _merged_meta(metas: list[dict[str, Any]], names_per_shard: list[int]) -> dict[str, Any]:
    first = metas[0]
    skip = {
        "shard",
        "failed",
        "images_per_second",
        "compute_efficiency",
        "device",
        "count",
        "dim",
        "normalized",
    }
    meta: dict[str, Any] = {k: v for k, v in first.items() if k not in skip}
    meta["failed"] = [f for m in metas for f in m.get("failed", [])]
    devices = sorted({str(m["device"]) for m in metas if m.get("device")})
    if devices:
        meta["device"] = ", ".join(devices)
    rates = [float(m["images_per_second"]) for m in metas if m.get("images_per_second") is not None]
    if rates:
        meta["images_per_second"] = sum(rates)  # shards run side by side: their rates add up
    effs = [
        (float(m["compute_efficiency"]), n)
        for m, n in zip(metas, names_per_shard, strict=True)
        if m.get("compute_efficiency") is not None
    ]
    if effs and sum(n for _, n in effs) > 0:
        meta["compute_efficiency"] = sum(e * n for e, n in effs) / sum(n for _, n in effs)
    meta["shards"] = len(metas)
    # Rows keep their norms when concatenated: no need to recompute them over all rows.
    flags = [bool(m.get("normalized")) for m, n in zip(metas, names_per_shard, strict=True) if n > 0]
    meta["normalized"] = bool(flags) and all(flags)
    return meta


def _merged_columns(paths: list[str]) -> dict[str, np.ndarray]:
    """The shards' per-row columns, concatenated in shard order (every shard has the same ones)."""
    per_shard = [embeddings_io.read_columns(p) for p in paths]
    keys = {tuple(sorted(c)) for c in per_shard}
    if len(keys) > 1:
        raise KurateError(f"embedding shards carry different per-row columns: {sorted(keys)}")
    return {k: np.concatenate([c[k] for c in per_shard]) for k in sorted(keys.pop())} if per_shard else {}


def merge_embeddings(shard_paths: Sequence[str], out: str) -> dict[str, Any]:
    """Concatenate shard artifacts (any order) into one embeddings artifact at ``out``.

    Checks that the shards tile ``[0, total)`` exactly once, come from the same list (root) and the
    same model (weights source, dimension); raises :class:`KurateError` otherwise.
    """
    if not shard_paths:
        raise KurateError("no embedding shards to merge")
    loaded = []
    for path in shard_paths:
        names, x, meta = embeddings_io.read_embeddings(path)
        info = meta.get("shard")
        if info is None and len(shard_paths) == 1:  # an unsharded embed (one shard of one) is whole
            rows = len(names) + len(meta.get("failed", []))
            info = {"index": 0, "count": 1, "start": 0, "stop": rows, "total": rows}
        if not isinstance(info, dict):
            raise KurateError(f"{path}: not an embedding shard (its meta.json has no 'shard' entry)")
        loaded.append((int(info["index"]), info, names, x, meta, path))
    loaded.sort(key=lambda t: t[0])
    count = int(loaded[0][1]["count"])
    total = int(loaded[0][1]["total"])
    indices = [t[0] for t in loaded]
    if indices != list(range(count)) or any(int(t[1]["count"]) != count for t in loaded):
        raise KurateError(
            f"embedding shards do not match: expected shards 0..{count - 1} once each, got {indices}"
        )
    expect_start = 0
    for index, info, names, _x, meta, path in loaded:
        if int(info["total"]) != total or int(info["start"]) != expect_start:
            raise KurateError(
                f"{path}: shard {index} covers rows {info['start']}..{info['stop']} of "
                f"{info['total']}; expected to start at row {expect_start} of {total}"
            )
        expect_start = int(info["stop"])
        if len(names) + len(meta.get("failed", [])) != int(info["stop"]) - int(info["start"]):
            raise KurateError(
                f"{path}: shard {index} is incomplete ({len(names)} embedded + "
                f"{len(meta.get('failed', []))} failed of {info['stop'] - info['start']} rows)"
            )
    if expect_start != total:
        raise KurateError(f"embedding shards end at row {expect_start} of {total}")
    first_meta = loaded[0][4]
    dims = {int(t[3].shape[1]) for t in loaded if t[3].shape[0] > 0}
    if len(dims) > 1:
        raise KurateError(f"embedding shards have different dimensions: {sorted(dims)}")
    for _i, _info, _n, _x, meta, path in loaded[1:]:
        for key in ("source", "root"):
            if meta.get(key) != first_meta.get(key):
                raise KurateError(
                    f"{path}: shard {key} {meta.get(key)!r} differs from shard 0's {first_meta.get(key)!r}"
                )
    dim = dims.pop() if dims else int(first_meta.get("dim", 0))
    names_all = [n for t in loaded for n in t[2]]
    blocks = [np.asarray(t[3], dtype=np.float32).reshape(-1, dim) for t in loaded]
    x_all = np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)
    meta = _merged_meta([t[4] for t in loaded], [len(t[2]) for t in loaded])
    meta["dim"] = dim
    embeddings_io.write_embeddings(out, names_all, x_all, meta, _merged_columns([t[5] for t in loaded]))
    # the report's embed time: from the first shard's start to the last shard's end
    timing.write_span(out, "embed", (timing.read(t[5]) for t in loaded), shards=count)
    log.info("merged %d embedding shard(s): %d sample(s), dimension %d", count, len(names_all), dim)
    return meta
