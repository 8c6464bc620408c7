"""Run a :class:`~kurate.selection.spec.SelectionSpec` on the select phase's inputs.

Reads what the strategies need (prediction tasks, custom metadata, the check phase's computed
metadata, query embeddings, the embeddings file's score column) and runs the engine. The select phase
calls :func:`run`; everything here works on names and arrays, so it is tested without a pipeline.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np

from kurate.errors import ConfigError
from kurate.io import storage
from kurate.media import metadata as computed_md
from kurate.selection import coreset as cs
from kurate.selection import engine, inputs, sources
from kurate.selection import spec as sp

log = logging.getLogger("kurate.select")

#: The histogram bins of the report's value distributions (typicality, similarity, weights).
BINS = 20


def spec_from_config(
    config: Mapping[str, Any], n_samples: int | None, min_distance: float | None
) -> sp.SelectionSpec | None:
    """The spec this run selects with: ``selection_config``, ``method=coral``, or None (the classic keys)."""
    raw = config.get("selection_config")
    if raw:
        return sp.parse(raw)
    method = str(config.get("method", ""))
    if method in ("coral", "active_learning"):
        al = config.get("active_learning") or {}
        return sp.coral_spec(
            n_samples,
            min_distance,
            str(al.get("task_name") or ""),
            str(al.get("score_name") or ""),
            column=str(config.get("active_learning_score_column_name") or ""),
            diversity=method == "coral",
        )
    return None


def read_score_column(path: str, column: str) -> dict[str, float]:
    """``{filename: value}`` of one column of a Lightly embeddings CSV.

    The older ``active_learning_score_column_name`` of ``method=coral``.
    """
    with storage.local_copy(path) as local, open(local, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        if column not in header:
            raise ConfigError(
                "active_learning_score_column_name",
                f"{path} has no column {column!r} (columns: "
                f"{', '.join(h for h in header if not h.startswith('embedding_'))})",
            )
        ci, ni = header.index(column), header.index("filenames") if "filenames" in header else 0
        out: dict[str, float] = {}
        for row in reader:
            if len(row) > max(ci, ni):
                try:
                    out[row[ni]] = float(row[ci])
                except ValueError:
                    raise ConfigError(
                        "active_learning_score_column_name", f"{path}: {row[ni]}: {row[ci]!r} is not a number"
                    ) from None
    return out


def computed_columns(
    clean_columns: Mapping[str, Sequence[str]], clean_names: Sequence[str], names: Sequence[str]
) -> dict[str, np.ndarray]:
    """The check phase's ``lightly.*`` columns, aligned with ``names`` (NaN where unknown)."""
    pos = {n: i for i, n in enumerate(clean_names)}
    rows = [pos.get(n, -1) for n in names]
    out: dict[str, np.ndarray] = {}
    for key in computed_md.KEYS:
        col = clean_columns.get(key)
        if col is None:
            continue
        vals = np.full(len(names), np.nan)
        for i, r in enumerate(rows):
            if r >= 0 and col[r] not in ("", "nan"):
                vals[i] = float(col[r])
        out[key] = vals
    return out


def _histogram(all_v: np.ndarray, sel: np.ndarray) -> dict[str, Any]:
    ok = all_v[~np.isnan(all_v)]
    if ok.size == 0:
        return {}
    lo, hi = float(ok.min()), float(ok.max())
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, BINS + 1)
    s = sel[~np.isnan(sel)]
    return {
        "edges": [float(e) for e in edges],
        "input": np.histogram(ok, edges)[0].tolist(),
        "selected": np.histogram(s, edges)[0].tolist(),
    }


def run(
    spec: sp.SelectionSpec,
    names: Sequence[str],
    x: np.ndarray,
    n_samples: int | None,
    config: Mapping[str, Any],
    *,
    pool: np.ndarray | None,
    pool_names: Sequence[str] = (),
    predictions_in: str | None = None,
    computed: Mapping[str, np.ndarray] | None = None,
    videos: Mapping[str, str] | None = None,
    device: str = "cpu",
    pool_weak_labels: Mapping[str, list[dict[str, Any]]] | None = None,
) -> tuple[engine.Outcome, dict[str, Any]]:
    """Select from ``x`` (rows named ``names``) with ``spec``; returns the outcome and report figures."""
    src = config.get("selection_sources") or {}
    pred_root = str(src.get("predictions") or "")
    meta_loc = str(src.get("custom_metadata") or "")
    sc_cfg = config.get("scorer_config") or {}

    @cache
    def task(name: str) -> sources.Task:
        if name == sp.PRETAGGING_TASK:
            return sources.read_pretag_artifact(predictions_in or "", names)
        if not pred_root:
            raise ConfigError(
                "selection_config",
                f"task {name!r}: no predictions folder (.lightly/predictions beside the input or output)",
            )
        return sources.read_task_folder(pred_root, name, names)

    @cache
    def pool_task(name: str) -> sources.Task | None:
        """The datapool entries' predictions: the same task folder, or their stored weak labels."""
        if not pool_names:
            return None
        if name == sp.PRETAGGING_TASK:
            if not pool_weak_labels:
                return None
            records = [pool_weak_labels.get(n) for n in pool_names]
            return sources.Task(name, "object-detection", [], records)
        if not pred_root:
            return None
        return sources.read_task_folder(pred_root, name, pool_names)

    custom = custom_pool = None
    if any(not k.startswith("lightly.") for k in spec.metadata_keys()):
        if not meta_loc:
            raise ConfigError(
                "custom_metadata",
                "the selection reads custom metadata but none was found: set custom_metadata "
                "(a JSON/CSV file or "
                "a .lightly/metadata folder)",
            )
        custom = sources.read_custom_metadata(meta_loc, names, videos)
        if pool_names:
            custom_pool = sources.read_custom_metadata(meta_loc, pool_names, videos)
    column = None
    if any(e.input.column for e in spec.entries):
        column = read_score_column(
            str(src.get("embeddings_file") or ""),
            next(e.input.column for e in spec.entries if e.input.column),
        )

    def query(dataset_id: str, tag_name: str) -> np.ndarray:
        q = sources.read_query(dataset_id, tag_name, names, x)
        if config.get("normalize_embeddings", True):
            q = cs.normalize(q)
        return q

    ctx = inputs.Context(
        names=names,
        x=x,
        seed=int(config.get("seed", 1)),
        computed=computed or {},
        custom=custom,
        custom_pool=custom_pool,
        task=task,
        pool_task=pool_task,
        column=column,
        frequency_penalty=float(sc_cfg.get("frequency_penalty", 0.25)),
        min_score=float(sc_cfg.get("min_score", 0.9)),
        device=device if device != "cpu" else "cpu",
        query=query,
    )
    factors = inputs.resolve(spec, ctx)
    out = engine.select(x, factors, n_samples, pool=pool, device=device)
    for f, det in zip(factors, out.details, strict=True):
        if f.values is not None and f.entry.strategy.type in (
            "TYPICALITY",
            "SIMILARITY",
            "WEIGHTS",
            "THRESHOLD",
        ):
            v = np.asarray(f.values, dtype=np.float64)
            det["histogram"] = _histogram(v, v[out.indices])
    missing = {t: task(t).missing for t in spec.tasks()}
    info = {
        "source": spec.source,
        "config": spec.to_dict(),
        "candidates": out.candidates,
        "strategies": out.details,
        "tasks": {t: {"missing_predictions": m} for t, m in missing.items()},
    }
    for t, m in missing.items():
        if m:
            log.warning("task %s: %d sample(s) have no prediction file (scored as without objects)", t, m)
    return out, info
