"""Embed phase: one feature vector per clean sample (torch + lightly), or precomputed embeddings.

The artifact keeps the raw (unnormalised) embeddings in a binary, memory-mappable form plus the
filenames; the Lightly CSVs are written by export.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from kurate.errors import ConfigError, KurateError
from kurate.io import embeddings_io, filelist, sharding
from kurate.io import predictions as preds_io
from kurate.io.timing import timed
from kurate.media import crops, image
from kurate.models import model_io
from kurate.phases import _entry

log = logging.getLogger("kurate.embed")


#: Lightly's meta-information columns of an embeddings file (1 = never select / already selected).
FLAG_COLUMNS = ("masked", "selected")


def _from_precomputed(
    files: filelist.FileList, csv_uri: str, all_names: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray, dict[str, Any], dict[str, np.ndarray]]:
    """The rows of ``files`` from a Lightly embeddings CSV, and its other columns as per-row arrays.

    ``masked``/``selected`` become 0/1 columns; every other numeric column is kept as float64 under
    its header (a score column, for the selection); a column that is not numeric is left out. Names
    the file flags but the list lacks (``all_names``: the whole clean list, every shard alike) are
    counted in ``meta["flags_outside"]``: they are corrupt, duplicates or not in the input.
    """
    table = embeddings_io.read_lightly_table(csv_uri)
    index = {n: i for i, n in enumerate(table.names)}
    missing = [n for n in files.names if n not in index]
    if missing:
        raise KurateError(
            f"embeddings file {csv_uri} has no row for {len(missing)} input file(s), e.g. {missing[:3]}"
        )
    rows = np.fromiter((index[n] for n in files.names), dtype=np.int64, count=len(files.names))
    meta: dict[str, Any] = {
        "source": f"precomputed: {csv_uri}",
        "dim": int(table.embeddings.shape[1]),
        "failed": [],
    }
    columns: dict[str, np.ndarray] = {}
    skipped = []
    known = set(files.names if all_names is None else all_names)
    outside: dict[str, Any] = {}
    for name, values in table.extra.items():
        if name in FLAG_COLUMNS:
            flags = embeddings_io.flag_column(csv_uri, name, values)
            columns[name] = flags[rows]
            lost = sorted(n for n, f in zip(table.names, flags, strict=True) if f and n not in known)
            if lost:
                outside[name] = {"count": len(lost), "examples": lost[:5]}
            continue
        numbers = embeddings_io.number_column(values)
        if numbers is None:
            skipped.append(name)
        else:
            columns[name] = numbers[rows]
    if skipped:
        log.info("embeddings file %s: non-numeric column(s) not used: %s", csv_uri, ", ".join(skipped))
    if outside:
        meta["flags_outside"] = outside
    x = np.ascontiguousarray(table.embeddings[rows], dtype=np.float32)
    return list(files.names), x, meta, columns


def _model_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    return {
        "model_name": cfg["name"],
        "width": cfg["width"],
        "num_ftrs": cfg["num_ftrs"],
        "out_dim": cfg["out_dim"],
    }


def _compute(
    files: filelist.FileList, config: dict[str, Any], trained_ckpt: str = ""
) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Embed ``files`` with the model, taking what the embedding cache already holds.

    Rows whose content hash is cached are not embedded again; the others are embedded and written
    to the cache batch by batch (``kurate.pool.embed_cache``), so a killed run loses at most one flush.
    """
    from kurate.models import embedding  # torch is imported only when we really embed
    from kurate.pool import embed_cache

    lc = config.get("lightly") or {}
    model = lc.get("model") or {}
    loader = lc.get("loader") or {}
    input_size = int((lc.get("collate") or {}).get("input_size", 64))
    cfg = embedding.model_config(
        str(model.get("name", "resnet-18")),
        float(model.get("width", 1.0)),
        int(model.get("num_ftrs", 32)),
        int(model.get("out_dim", 128)),
    )
    checkpoint = trained_ckpt or str(config.get("checkpoint") or "")
    pre_trained = bool(lc.get("pre_trained", True))
    seed = int(lc.get("seed", 1))
    fast_decode = bool(config.get("fast_embed_decode", False))
    weights_id = embedding.weights_identity(cfg, checkpoint, pre_trained, seed)
    expected = config.get("expected_weights") or {}
    if expected and expected.get("weights_id") != weights_id:
        # Before embedding anything: the datapool's embeddings came from other weights (its model
        # recorded no checkpoint file: a local model-zoo file or a random initialisation).
        raise ConfigError(
            "checkpoint",
            f"datapool {expected.get('datapool')} was built with weights {expected.get('weights_id')}, but "
            f"this run would embed with {weights_id}; give the checkpoint it was built with, or use "
            "another datapool",
        )
    hashes = files.columns.get("sha256") or [""] * len(files)
    cache = None
    hits: dict[str, np.ndarray] = {}
    if config.get("embedding_cache"):
        cache = embed_cache.EmbeddingCache(
            str(config["embedding_cache"]), embed_cache.cache_key(cfg, weights_id, input_size, fast_decode)
        )
        hits = cache.load(hashes)
    todo = [i for i, h in enumerate(hashes) if not h or h not in hits]
    sub = files.subset(todo)
    writer = cache.writer() if cache is not None and todo else None

    changed: list[str] = []

    def on_batch(rows: list[int], feats: np.ndarray, digests: list[str]) -> None:
        # keyed by the bytes embed decoded: a file replaced since the check must not poison the cache
        for r, d in zip(rows, digests, strict=True):
            if hashes[todo[r]] and d != hashes[todo[r]]:
                changed.append(files.names[todo[r]])
        if writer is not None:
            writer.add(digests, feats)

    result = None
    if todo:
        result = embedding.embed_files(
            sub,
            model_name=cfg["name"],
            width=cfg["width"],
            num_ftrs=cfg["num_ftrs"],
            out_dim=cfg["out_dim"],
            input_size=input_size,
            batch_size=int(loader.get("batch_size", 16)),
            num_workers=int(loader.get("num_workers", -1)),
            checkpoint=checkpoint,
            pre_trained=pre_trained,
            seed=seed,
            max_pixels=int(config.get("max_image_pixels", image.DEFAULT_MAX_PIXELS)),
            on_batch=on_batch,
            fast_decode=fast_decode,
        )
        if writer is not None:
            writer.flush()
        if changed:
            log.warning(
                "%d file(s) changed between the check and embedding (embedded as they are now), e.g. %s",
                len(changed),
                changed[:3],
            )
    if result is not None:
        source = result.weights_source
    else:  # everything came from the cache: name the weights exactly as embedding would have
        source = embedding.prepare_model(
            **_model_kwargs(cfg), checkpoint=checkpoint, pre_trained=pre_trained, seed=seed
        )[1]
    computed = {n: i for i, n in enumerate(result.names)} if result is not None else {}
    names: list[str] = []
    rows: list[np.ndarray] = []
    for i, name in enumerate(files.names):
        h = hashes[i]
        if h and h in hits:
            names.append(name)
            rows.append(hits[h])
        elif name in computed and result is not None:
            names.append(name)
            rows.append(result.embeddings[computed[name]])
    dim = cfg["num_ftrs"]
    x = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    meta: dict[str, Any] = {
        "source": source,
        "model": dict(model),
        "model_config": cfg,
        "input_size": input_size,
        "weights_id": weights_id,
        "device": result.device if result is not None else "",
        "images_per_second": result.images_per_second if result is not None else 0.0,
        "compute_efficiency": result.compute_efficiency if result is not None else 0.0,
        "backend": result.backend if result is not None else "",
        "fast_embed_decode": fast_decode,
        "failed": [[n, r] for n, r in (result.failed if result is not None else [])],
        "dim": int(x.shape[1]),
        "computed": len(todo),
        "cache_hits": len(files) - len(todo),
        "embedding_cache": cache.dir if cache is not None else "",
    }
    if checkpoint:  # provenance for the report: exactly which weights embedded this
        meta["checkpoint"] = checkpoint
        meta["checkpoint_sha256"] = weights_id.removeprefix("sha256:")
    log.info("embedding cache: %d hit(s), %d sample(s) to embed", len(files) - len(todo), len(todo))
    return names, x, meta


@_entry.reported("embed")
@timed("embed", "embeddings_out")
def run_embed(
    clean_in: str,
    embeddings_out: str,
    config: dict[str, Any],
    shard_index: int = 0,
    shard_count: int = 1,
    model_in: str = "",
    predictions_in: str = "",
) -> dict[str, Any]:
    """Phase function: embed every sample of the clean list into ``embeddings_out``.

    With ``shard_count > 1`` only shard ``shard_index`` of the list is embedded (a contiguous range,
    see :mod:`kurate.io.sharding`); the shards are merged by :func:`kurate.io.sharding.merge_embeddings`.
    ``model_in``: the train phase's model artifact; when it holds a trained model, that model is used
    instead of ``checkpoint`` (training started from ``checkpoint`` already).
    ``predictions_in``: the pretag phase's predictions; with ``object_level`` in ``config`` the samples
    are their boxes' crops (:mod:`kurate.media.crops`), not the images.
    """
    trained_ckpt, train_meta = model_io.read(model_in)
    files = filelist.read(clean_in)
    if not files.names and not files.extra.get("datapool_seen"):
        raise KurateError("no valid sample left to embed (all inputs are corrupt or duplicates)")
    object_level = config.get("object_level") or {}
    if object_level:
        if not predictions_in or not preds_io.read_meta(predictions_in).get("active"):
            raise KurateError("object_level: the run has no object predictions to crop (internal error)")
        files = crops.crop_list(files, predictions_in, float(object_level.get("padding", 0.0)))
        log.info(
            "object level: %d crop(s) of %d image(s) (padding %g)",
            len(files),
            files.extra["object_level"]["images_with_objects"],
            float(object_level.get("padding", 0.0)),
        )
    shard = None
    all_names = list(files.names)
    if shard_count != 1 or shard_index != 0:
        shard = sharding.shard_meta(len(files), shard_index, shard_count)
        files = sharding.shard_filelist(files, shard_index, shard_count)
    columns: dict[str, np.ndarray] = {}
    if config.get("embeddings"):
        names, x, meta, columns = _from_precomputed(files, str(config["embeddings"]), all_names)
    else:
        names, x, meta = _compute(files, config, trained_ckpt)
        if trained_ckpt:  # the artifact's path is scratch: name the run's copy of the model instead
            saved = str(train_meta.get("checkpoint") or trained_ckpt)
            meta["source"] = f"trained in this run: {saved}"
            meta["checkpoint"] = saved
            meta["training"] = {k: v for k, v in train_meta.items() if k not in ("failed", "format")}
            meta["training"]["failed"] = len(train_meta.get("failed") or [])
    meta["root"] = files.root
    if object_level:
        meta["object_level"] = files.extra["object_level"]  # the whole list's counts, in every shard
    if shard is not None:
        meta["shard"] = shard
    embeddings_io.write_embeddings(embeddings_out, names, x, meta, columns)
    log.info("embedded %d sample(s), dimension %d (%s)", len(names), meta["dim"], meta["source"])
    return meta


def main(argv: Sequence[str]) -> int:
    """``python -m kurate.phases.embed --clean-in P [--model-in P] --embeddings-out P [--shard-index I]``."""
    a = _entry.parse(
        argv,
        __doc__ or "",
        ["clean_in"],
        ["embeddings_out"],
        optional_inputs={
            "model_in": "the train phase's model (embed with it when it was trained)",
            "predictions_in": "the pretag phase's predictions (object_level: their crops are the samples)",
        },
        options={
            "shard_index": (int, 0, "embed only this shard (0-based)"),
            "shard_count": (int, 1, "shards"),
        },
    )
    cfg = _entry.load_json_arg(a.config)
    return _entry.run_main(
        lambda: run_embed(
            a.clean_in,
            a.embeddings_out,
            cfg,
            a.shard_index,
            a.shard_count,
            a.model_in or "",
            a.predictions_in or "",
        )
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
