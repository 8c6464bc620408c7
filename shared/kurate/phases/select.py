"""Select phase: a diverse subset by coreset (k-center greedy), a seeded random draw, or Lightly's strategies.

``selection_config`` (and ``method=coral``) run :mod:`kurate.selection.engine` through
:mod:`kurate.selection.runner`; without them the classic keys (``method``, ``stopping_condition``,
``scorer``) select as before.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kurate.errors import ConfigError, SelectionError
from kurate.io import embeddings_io, filelist
from kurate.io import predictions as preds_io
from kurate.io.timing import timed
from kurate.media import crops
from kurate.phases import _entry
from kurate.pool import datapool
from kurate.selection import coreset as selection
from kurate.selection import requirements, runner, scorer, sequences

log = logging.getLogger("kurate.selection.coreset")


@_entry.reported("select")
@timed("select", "selection_out")
def run_select(
    embeddings_in: str,
    files_in: str,
    selection_out: str,
    config: dict[str, Any],
    predictions_in: str | None = None,
    clean_in: str | None = None,
) -> dict[str, Any]:
    """Phase function: choose samples from ``embeddings_in`` and write them as a file list.

    ``files_in`` (the ingest list) is read for its header only: fractions of ``n_samples`` are of
    the input size before corrupt and duplicate removal. ``predictions_in`` (the pretag artifact) gives
    the scorer's weights; without predictions the scorer is inactive and the selection unweighted.
    ``clean_in`` (the check phase's clean list) holds the computed ``lightly.*`` metadata that
    ``selection_config`` METADATA inputs read.
    """
    input_size = int(filelist.read_meta(files_in)["extra"].get("input_count", 0))
    names, x, meta = embeddings_io.read_embeddings(embeddings_in)
    warnings: list[str] = []
    images = names  # the image each sample is (object_level: the image each crop is cut from)
    if config.get("object_level"):
        # Lightly: with object-level selection "the stopping condition is based on objects": fractions
        # of n_samples are of the crops; scores and requirements are their images'.
        input_size = int((meta.get("object_level") or {}).get("crops", len(names)))
        parent = crops.crop_images(predictions_in or "")
        images = [parent.get(n, n) for n in names]
    pool, pool_info, pool_names = _datapool_points(config, meta, warnings)
    if len(names) == 0:
        if pool_info:  # every valid sample is already in the datapool: nothing new to pick
            return _write_empty(selection_out, meta, pool_info, warnings, input_size, config)
        if config.get("object_level"):  # no image holds a predicted box: no crop to choose from
            why = "no object to select: the predictions hold no box"
            return _write_empty(selection_out, meta, {}, warnings, input_size, config, why)
        raise SelectionError("no valid sample left to select from (all inputs are corrupt or duplicates)")
    sc = config.get("stopping_condition") or {}
    try:
        n_samples = selection.resolve_n_samples(sc.get("n_samples", -1), input_size)
    except ValueError as exc:
        raise ConfigError("stopping_condition.n_samples", str(exc)) from None
    min_distance = float(sc.get("min_distance", -1))
    min_d = None if min_distance == -1 else min_distance
    flags = _flags(embeddings_in, len(names), meta, warnings)
    _requirements(config, predictions_in, images, flags, warnings)
    spec = runner.spec_from_config(config, n_samples, min_d)
    if spec is not None:
        return _select_with_spec(
            spec,
            names,
            x,
            meta,
            config,
            input_size,
            selection_out,
            pool,
            pool_info,
            pool_names,
            warnings,
            predictions_in,
            clean_in,
            flags,
        )
    normalized = bool(config.get("normalize_embeddings", True))
    emb = selection.normalize(x) if normalized else x
    if pool is not None and normalized:
        pool = selection.normalize(pool)
    length = int(config.get("selected_sequence_length", 1) or 1)
    seq_extra: dict[str, Any] = {}
    if length > 1:
        if flags.requirements:
            raise ConfigError(
                "pretagging_config",
                f"pretagging requirements do not combine with selected_sequence_length={length}",
            )
        if flags.excluded.any() or flags.preselected.any():
            raise ConfigError(
                "embeddings",
                f"the embeddings file's masked/selected columns do not combine with "
                f"selected_sequence_length={length}; drop the columns or set selected_sequence_length=1",
            )
        # Points are whole blocks of `length` frames; counts below are in blocks until expanded.
        blocks = sequences.make_blocks(names, filelist.read(files_in), length)
        if not blocks.rows:
            raise SelectionError(
                f"selected_sequence_length={length}: no video has {length} consecutive valid frames "
                "starting at a multiple of it"
            )
        points = sequences.block_points(emb, blocks, renormalize=normalized)
        valid = len(blocks.rows) * length
        seq_extra = {
            "sequence_length": length,
            "blocks_available": len(blocks.rows),
            "frames_in_incomplete_blocks": blocks.incomplete_frames,
            "images_not_selectable": blocks.images,
        }
        if n_samples is not None and n_samples % length:
            to = max(length, n_samples // length * length)
            warnings.append(f"n_samples {n_samples} is not a multiple of {length}: selecting {to} frames")
        if blocks.images:
            warnings.append(f"{blocks.images} image(s) are not selectable as sequences")
        n_points = None if n_samples is None else max(1, n_samples // length)
    else:
        points, valid, n_points = emb, int((~flags.excluded).sum()), n_samples
    if n_samples is not None and n_samples > valid:
        msg = f"requested {n_samples} samples but only {valid} valid samples exist: selecting all of them"
        log.warning(msg)
        warnings.append(msg)
    scores = _scores(config, predictions_in, images)
    weights = scores.weights
    if weights is not None and length > 1:  # a block weighs the mean score of its frames
        weights = np.array([float(np.mean(scores.weights[rows])) for rows in blocks.rows])  # type: ignore[index]
    method = str(config.get("method", "coreset")).lower()
    seed = int(config.get("seed", 1))
    device = "cpu"
    # Only candidates take part (masked rows neither get picked nor push picks away); the kept,
    # already-selected rows come first and count towards n_samples, as in Lightly.
    cand = np.flatnonzero(~flags.excluded) if length == 1 else np.arange(len(points))
    pre_rows = np.flatnonzero(flags.preselected & ~flags.excluded)
    pre_local = np.searchsorted(cand, pre_rows)
    if len(pre_rows):  # flags only combine with selected_sequence_length=1: n_points is n_samples here
        n_points = _minus_kept(n_points, len(pre_rows), warnings)
    cand_points = points[cand] if len(cand) != len(points) else points
    cand_weights = weights[cand] if weights is not None and len(cand) != len(points) else weights
    if n_points is None and min_d is None:
        # Lightly's defaults (both -1): a complete run that selects every valid sample, as Lightly's docs
        # show (`token=...` alone). No greedy order is computed; the log and the report say so.
        log.info("no stopping condition (n_samples and min_distance are -1): every valid sample is selected")
        rest = np.setdiff1d(np.arange(len(cand_points), dtype=np.int64), pre_local)
        result = selection.SelectionResult(
            indices=rest,
            pick_distances=np.full(len(rest), np.nan),
            stop_reason="no stopping condition",
        )
    elif method == "coreset":
        device = _coreset_device(cand_points)
        result = selection.coreset_with_info(
            cand_points,
            n_samples=n_points,
            min_distance=min_d,
            preselected=pre_local,
            weights=cand_weights,
            preselected_embeddings=pool,
            device=device,
        )
    elif method == "random":
        result = selection.random_selection(
            len(cand_points),
            n_points,
            seed=seed,
            weights=cand_weights,
            embeddings=cand_points if min_d is not None else None,
            min_distance=min_d,
            preselected=pre_local.tolist(),
            preselected_embeddings=pool if min_d is not None else None,
        )
    else:
        raise ConfigError("method", f"got {method!r}; allowed: coreset, random")
    if length > 1:
        picked = [r for b in result.indices for r in blocks.rows[int(b)]]
        dists = [float(d) for d in result.pick_distances for _ in range(length)]
    else:
        picked = [int(r) for r in pre_rows] + [int(cand[i]) for i in result.indices]
        dists = [math.nan] * len(pre_rows) + [float(d) for d in result.pick_distances]
    columns = {"index": [str(i) for i in picked], "pick_distance": [f"{d:.6g}" for d in dists]}
    if len(pre_rows):
        columns["preselected"] = ["1"] * len(pre_rows) + ["0"] * (len(picked) - len(pre_rows))
    scorer_info = {"active": scores.active, "reason": scores.reason, **scores.info}
    if scores.weights is not None:
        columns["score"] = [f"{scores.weights[i]:.6g}" for i in picked]
        scorer_info["mean_selected"] = float(np.mean(scores.weights[picked])) if picked else 0.0
    out = filelist.FileList(
        root=str(meta.get("root", "")),
        names=[names[i] for i in picked],
        columns=columns,
        extra={
            "method": method,
            "requested": n_samples,
            "min_distance": min_d,
            "selected": len(picked),
            "valid": len(names),
            "input_count": input_size,
            "stop_reason": result.stop_reason,
            "device": device,
            "normalized": normalized,
            "warnings": warnings,
            "scorer": scorer_info,
            **flags.info(len(pre_rows)),
            **seq_extra,
            **({"datapool": pool_info} if pool_info else {}),
        },
    )
    filelist.write(selection_out, out)
    log.info(
        "selected %d of %d valid sample(s) with %s on %s (stop: %s)",
        len(picked),
        len(names),
        method,
        device,
        result.stop_reason,
    )
    return out.extra


@dataclass
class _Flags:
    """Rows that never take part in the selection, and rows already selected (kept)."""

    excluded: np.ndarray  # bool per row: masked in the embeddings file, or pretagging requirements not met
    preselected: np.ndarray  # bool per row: `selected` in the embeddings file
    masked: int = 0
    requirements: dict[str, Any] = field(default_factory=dict)  # what the requirements did

    def info(self, kept: int) -> dict[str, Any]:
        """What the selection's record (and the report) says about them."""
        out: dict[str, Any] = {}
        if self.masked:
            out["masked"] = self.masked
        if self.preselected.any():
            out["preselected"] = kept
        if self.requirements:
            out["requirements"] = self.requirements
        return out


def _minus_kept(n_samples: int | None, kept: int, warnings: list[str]) -> int | None:
    """The budget left for new picks once the embeddings file's ``kept`` already-selected rows count."""
    if n_samples is None:
        return None
    if n_samples <= kept:
        warnings.append(
            f"n_samples {n_samples} <= the {kept} already-selected sample(s) of the embeddings file: "
            "nothing new is selected"
        )
    return max(0, n_samples - kept)


def _flags(embeddings_in: str, n: int, meta: dict[str, Any], warnings: list[str]) -> _Flags:
    """Lightly's ``masked`` (never select) and ``selected`` (already selected) columns of the embeddings file.

    A row both masked and selected is masked (never selected). Flagged names that are not among this
    run's samples (corrupt, duplicates, not in the input) are only reported.
    """
    cols = embeddings_io.read_columns(embeddings_in)
    masked = cols.get("masked", np.zeros(n, np.uint8)).astype(bool)
    selected = cols.get("selected", np.zeros(n, np.uint8)).astype(bool)
    both = int((masked & selected).sum())
    if both:
        warnings.append(f"{both} sample(s) are both masked and selected in the embeddings file: masked wins")
    for name, info in sorted((meta.get("flags_outside") or {}).items()):
        warnings.append(
            f"{info['count']} sample(s) marked {name} in the embeddings file are not among this run's "
            f"samples (corrupt, duplicates or not in the input), e.g. {', '.join(info['examples'][:3])}"
        )
    if masked.any():
        log.info("embeddings file: %d masked sample(s) take no part in the selection", int(masked.sum()))
    if (selected & ~masked).any():
        log.info("embeddings file: %d sample(s) already selected (kept)", int((selected & ~masked).sum()))
    return _Flags(excluded=masked, preselected=selected, masked=int(masked.sum()))


def _requirements(
    config: dict[str, Any], predictions_in: str | None, names: list[str], flags: _Flags, warnings: list[str]
) -> None:
    """Leave out the samples that do not meet the pretagging requirements (Lightly's requirements file)."""
    wanted = dict(config.get("min_requirements") or {})
    if not wanted:
        return
    if not predictions_in or not preds_io.read_meta(predictions_in).get("active"):
        raise SelectionError("pretagging requirements are set but the run has no pretagging predictions")
    unique, index = _per_image(names)
    ok_unique, info = requirements.requirements_met(unique, predictions_in, wanted)
    ok = ok_unique[index]
    info.update(samples=len(names), met=int(ok.sum()), not_met=int((~ok).sum()))
    flags.excluded |= ~ok
    flags.requirements = info
    log.info(
        "pretagging requirements %s: %d of %d sample(s) meet them (only these can be selected)",
        wanted,
        info["met"],
        info["samples"],
    )
    if info.get("unknown_classes"):
        unknown = ", ".join(info["unknown_classes"])
        warnings.append(f"pretagging requirements name class(es) the predictions never name: {unknown}")
    if not info["met"]:
        warnings.append(f"no sample meets the pretagging requirements {wanted}: nothing is selected")


#: Where the coreset's greedy steps run: auto (a GPU when torch sees one and the embeddings are large
#: enough to gain, see kurate.selection.coreset.select_device), cpu or cuda.
DEVICE_ENV = "KURATE_SELECT_DEVICE"


def _coreset_device(points: np.ndarray) -> str:
    import os

    requested = os.environ.get(DEVICE_ENV, "auto").strip().lower() or "auto"
    try:
        return selection.select_device(int(points.shape[0]), int(points.shape[1]), requested)
    except ValueError:
        raise ConfigError(DEVICE_ENV, f"got {requested!r}; allowed: auto, cpu, cuda") from None


def _select_with_spec(
    spec: Any,
    names: list[str],
    x: np.ndarray,
    meta: dict[str, Any],
    config: dict[str, Any],
    input_size: int,
    selection_out: str,
    pool: np.ndarray | None,
    pool_info: dict[str, Any],
    pool_names: list[str],
    warnings: list[str],
    predictions_in: str | None,
    clean_in: str | None,
    flags: _Flags,
) -> dict[str, Any]:
    """``selection_config`` / ``method=coral``: thresholds, then every strategy in one greedy pass.

    Rows the embeddings file masks (or that miss the pretagging requirements) take no part; rows it
    marks selected are kept, count towards ``n_samples`` and act like datapool entries (the
    strategies pick away from them), as in the classic path.
    """
    n_samples = spec.n_samples
    if spec.proportion_samples is not None:
        n_samples = selection.resolve_n_samples(float(spec.proportion_samples), input_size)
    normalized = bool(config.get("normalize_embeddings", True))
    emb = selection.normalize(x) if normalized else np.ascontiguousarray(x, dtype=np.float32)
    if pool is not None and normalized:
        pool = selection.normalize(pool)
    all_names = names
    pre_rows = np.flatnonzero(flags.preselected & ~flags.excluded)
    cand = np.flatnonzero(~flags.excluded & ~flags.preselected)
    if len(cand) != len(names):
        if len(pre_rows):
            kept = emb[pre_rows]
            pool = kept if pool is None else np.concatenate([pool, kept])
            pool_names = [*pool_names, *(names[i] for i in pre_rows)]
            n_samples = _minus_kept(n_samples, len(pre_rows), warnings)
        names = [names[i] for i in cand]
        emb = emb[cand]
    computed: dict[str, np.ndarray] = {}
    videos: dict[str, str] = {}
    if clean_in:
        clean = filelist.read(clean_in)
        computed = runner.computed_columns(clean.columns, clean.names, names)
        videos = {n: v for n, v in zip(clean.names, clean.columns.get("video") or [], strict=False) if v}
    device = _coreset_device(emb)
    weak: dict[str, list[dict[str, Any]]] = {}
    state = str(config.get("datapool_state") or "")
    if state and pool_names:  # the datapool's pretagging labels (append_weak_labels) count for BALANCE
        labels = datapool.read_weak_labels(state) or {}
        weak = {str(r["file_name"]): list(r.get("predictions") or []) for r in labels.get("samples", [])}
    outcome, info = runner.run(
        spec,
        names,
        emb,
        n_samples,
        config,
        pool=pool,
        pool_names=pool_names,
        predictions_in=predictions_in,
        computed=computed,
        videos=videos,
        device=device,
        pool_weak_labels=weak,
    )
    if n_samples is not None and n_samples > outcome.candidates:
        msg = (
            f"requested {n_samples} samples but only {outcome.candidates} sample(s) are left after the "
            "thresholds: selecting all of them"
        )
        log.warning(msg)
        warnings.append(msg)
    picked = [int(i) for i in pre_rows] + [int(cand[i]) for i in outcome.indices]
    dists = [math.nan] * len(pre_rows) + [float(d) for d in outcome.pick_distances]
    columns = {"index": [str(i) for i in picked], "pick_distance": [f"{d:.6g}" for d in dists]}
    if len(pre_rows):
        columns["preselected"] = ["1"] * len(pre_rows) + ["0"] * (len(picked) - len(pre_rows))
    names = all_names
    out = filelist.FileList(
        root=str(meta.get("root", "")),
        names=[names[i] for i in picked],
        columns=columns,
        extra={
            "method": "selection_config" if spec.source == "selection_config" else "coral",
            "requested": n_samples,
            "min_distance": next(
                (e.strategy.min_distance for e in spec.entries if e.strategy.min_distance is not None), None
            ),
            "selected": len(picked),
            "valid": len(names),
            "input_count": input_size,
            "stop_reason": outcome.stop_reason,
            "device": outcome.device,
            "normalized": normalized,
            "warnings": warnings,
            "scorer": {"active": False, "reason": f"{spec.source} replaces the scorer"},
            "strategies": info,
            **flags.info(len(pre_rows)),
            **({"datapool": pool_info} if pool_info else {}),
        },
    )
    filelist.write(selection_out, out)
    log.info(
        "selected %d of %d valid sample(s) with %s (%d strategies; stop: %s)",
        len(picked),
        len(names),
        spec.source,
        len(spec.entries),
        outcome.stop_reason,
    )
    return out.extra


def _datapool_points(
    config: dict[str, Any], emb_meta: dict[str, Any], warnings: list[str]
) -> tuple[np.ndarray | None, dict[str, Any], list[str]]:
    """The datapool's embeddings, or (None, {}) without a datapool.

    They count as already selected (the coreset picks far from them); checked to be comparable
    with this run's embeddings (dimension, model, weights).
    """
    state = str(config.get("datapool_state") or "")
    if not state:
        return None, {}, []
    pool_names, pool_x, _hashes, pool_meta = datapool.read_state(state)
    stored = dict(pool_meta.get("model_description") or {})
    ours = datapool.model_description(emb_meta)
    loc = str(config.get("datapool_location") or state)
    if emb_meta.get("count", 1):
        warnings.extend(datapool.check_compatible(loc, stored, ours))
    info = {"version": int(pool_meta.get("version", 0)), "entries": len(pool_names)}
    log.info(
        "datapool %s: version %d, %d entries treated as already selected",
        loc,
        info["version"],
        len(pool_names),
    )
    return pool_x, info, list(pool_names)


def _write_empty(
    selection_out: str,
    meta: dict[str, Any],
    pool_info: dict[str, Any],
    warnings: list[str],
    input_size: int,
    config: dict[str, Any],
    why: str = "no new sample: every valid sample is already in the datapool",
) -> dict[str, Any]:
    """Nothing (new) to select: every valid sample is already in the datapool, or ``why``."""
    sc = config.get("stopping_condition") or {}
    extra = {
        "method": str(config.get("method", "coreset")),
        "requested": sc.get("n_samples", -1),
        "min_distance": None,
        "selected": 0,
        "valid": 0,
        "input_count": input_size,
        "stop_reason": "exhausted",
        "normalized": bool(config.get("normalize_embeddings", True)),
        "warnings": [*warnings, why],
        **({"datapool": pool_info} if pool_info else {}),
    }
    out = filelist.FileList(
        root=str(meta.get("root", "")), names=[], columns={"index": [], "pick_distance": []}, extra=extra
    )
    filelist.write(selection_out, out)
    log.info("nothing to select: %s", why)
    return extra


def _per_image(images: list[str]) -> tuple[list[str], np.ndarray]:
    """The distinct images of ``images`` (first-seen order) and each entry's position among them."""
    pos: dict[str, int] = {}
    index = np.fromiter((pos.setdefault(n, len(pos)) for n in images), dtype=np.int64, count=len(images))
    return list(pos), index


def _scores(config: dict[str, Any], predictions_in: str | None, images: list[str]) -> scorer.Scores:
    """The scorer's weights for the samples of ``images``, or why it is inactive (log and report).

    Samples of one image (object_level: its crops) get that image's weight.
    """
    name = str(config.get("scorer", "object-frequency") or "")
    sc = config.get("scorer_config") or {}
    unique, index = _per_image(images)
    try:
        scores = scorer.score_samples(
            unique,
            predictions_in or "",
            name,
            float(sc.get("frequency_penalty", 0.25)),
            float(sc.get("min_score", 0.9)),
        )
    except ValueError as exc:
        raise ConfigError("scorer", str(exc)) from None
    if scores.weights is not None and len(unique) != len(images):
        scores.weights = scores.weights[index]
        scores.raw = scores.raw[index] if scores.raw is not None else None
        scores.info["mean_input"] = float(scores.weights.mean()) if len(images) else 0.0
    if scores.active:
        info = scores.info
        log.info(
            "scorer %s: weights in [%.3g, 1] from %d sample(s) with predictions (raw scores %.3g..%.3g)",
            name,
            float(sc.get("min_score", 0.9)),
            info["samples_with_predictions"],
            info["raw_min"],
            info["raw_max"],
        )
    else:
        log.info("scorer %s inactive: %s", name or "(none)", scores.reason)
    return scores


def main(argv: Sequence[str]) -> int:
    """``python -m kurate.phases.select --embeddings-in P --files-in P --selection-out P ...``.

    Optional ``--predictions-in P`` (the pretag artifact, for the scorer and prediction tasks),
    ``--clean-in P`` (the check phase's clean list: computed metadata); ``--config JSON``: the select keys.
    """
    a = _entry.parse(
        argv,
        __doc__ or "",
        ["embeddings_in", "files_in"],
        ["selection_out"],
        optional_inputs={
            "predictions_in": "predictions (pretag); weights the selection",
            "clean_in": "the clean list (check): computed lightly.* metadata",
        },
    )
    cfg = _entry.load_json_arg(a.config)
    return _entry.run_main(
        lambda: run_select(
            a.embeddings_in, a.files_in, a.selection_out, cfg, a.predictions_in or None, a.clean_in or None
        )
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
