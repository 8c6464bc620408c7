"""Turn each strategy entry of a spec into the arrays the engine needs (:class:`engine.Factor`).

The I/O is done by callables the select phase hands in (prediction tasks, custom metadata), so this
module is pure and tested with plain data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kurate.errors import ConfigError, SelectionError
from kurate.selection import knn, sources
from kurate.selection import scores as sc
from kurate.selection.engine import Factor
from kurate.selection.spec import Entry, SelectionSpec


@dataclass
class Context:
    """What the inputs are read from (everything optional; a missing source is a one-line error)."""

    names: Sequence[str]
    x: np.ndarray
    seed: int = 1
    #: ``lightly.*`` computed metadata: key -> one value per name (NaN when unknown).
    computed: Mapping[str, np.ndarray] = field(default_factory=dict)
    #: custom metadata: name -> {dotted key: value}
    custom: Mapping[str, Mapping[str, Any]] | None = None
    custom_pool: Mapping[str, Mapping[str, Any]] | None = None
    #: a prediction task by name, for the run's samples; and for the datapool's entries (or None)
    task: Callable[[str], sources.Task] | None = None
    pool_task: Callable[[str], sources.Task | None] | None = None
    #: the embeddings file's extra column (``active_learning_score_column_name``): name -> value
    column: Mapping[str, float] | None = None
    frequency_penalty: float = 0.25
    min_score: float = 0.9
    device: str = "cpu"
    query: Callable[[str, str], np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)


def _where(e: Entry) -> str:
    return f"selection_config.strategies[{e.index}].input"


def _task(ctx: Context, e: Entry) -> sources.Task:
    if ctx.task is None:
        raise ConfigError(_where(e) + ".task", f"no predictions for task {e.input.task!r}")
    return ctx.task(e.input.task)


def _metadata_values(ctx: Context, e: Entry, names: Sequence[str] | None = None) -> list[Any]:
    key = e.input.key
    if key.startswith("lightly."):
        if key not in ctx.computed:
            raise ConfigError(
                _where(e) + ".key",
                f"{key!r} is not computed metadata; kurate computes "
                + ", ".join(sorted(ctx.computed) or ["(none: enable_corruptness_check=False)"]),
            )
        return [None if np.isnan(v) else float(v) for v in ctx.computed[key]]
    if ctx.custom is None:
        raise ConfigError(
            _where(e) + ".key",
            f"custom metadata key {key!r} but no custom metadata found: set custom_metadata or add a "
            ".lightly/metadata folder",
        )
    vals = [ctx.custom.get(n, {}).get(key) for n in (names or ctx.names)]
    if all(v is None for v in vals):
        raise SelectionError(f"metadata key {key!r}: no sample has it (check the key and the metadata files)")
    return vals


def _numeric(ctx: Context, e: Entry) -> np.ndarray:
    t = e.input.type
    if t == "RANDOM":
        seed = ctx.seed if e.input.random_seed is None else e.input.random_seed
        return np.random.default_rng(seed).random(len(ctx.names))
    if t == "METADATA":
        return sources.numeric_column(_metadata_values(ctx, e), e.input.key)
    if t == "SCORES":
        if e.input.column:
            assert ctx.column is not None
            return np.array([ctx.column.get(n, np.nan) for n in ctx.names], dtype=np.float64)
        task = _task(ctx, e)
        return sc.score_column(
            task.records, task.task_type, e.input.score, ctx.frequency_penalty, ctx.min_score
        )
    if t == "PREDICTIONS":  # CATEGORY_COUNT
        task = _task(ctx, e)
        ids = None
        if e.input.categories:
            by_name = {name: i for i, name in enumerate(task.class_names)}
            unknown = [c for c in e.input.categories if c not in by_name]
            if unknown:
                raise ConfigError(
                    _where(e) + ".categories", f"not classes of task {task.name!r}: {', '.join(unknown)}"
                )
            ids = [by_name[c] for c in e.input.categories]
        return sc.category_count(task.records, ids)
    raise SelectionError(f"{t} input has no numbers")


def resolve(spec: SelectionSpec, ctx: Context) -> list[Factor]:
    """One :class:`Factor` per entry of ``spec`` (config order)."""
    out: list[Factor] = []
    for e in spec.entries:
        st = e.strategy.type
        if st in ("WEIGHTS", "THRESHOLD"):
            out.append(Factor(e, values=_numeric(ctx, e)))
        elif st == "DIVERSITY":
            out.append(Factor(e))
        elif st == "TYPICALITY":
            out.append(Factor(e, values=knn.typicality(ctx.x, e.strategy.num_nearest_neighbors, ctx.device)))
        elif st == "SIMILARITY":
            assert ctx.query is not None
            q = ctx.query(e.input.dataset_id, e.input.tag_name)
            out.append(Factor(e, values=knn.nearest_query_distance(ctx.x, q)))
        elif st == "BALANCE":
            out.append(_balance(ctx, e))
        else:  # pragma: no cover - the spec allows no other type
            raise SelectionError(f"unknown strategy {st}")
    return out


def _balance(ctx: Context, e: Entry) -> Factor:
    if e.input.type == "METADATA":
        vals = _metadata_values(ctx, e)
        pool_vals: list[Any] = []
        if ctx.custom_pool is not None and not e.input.key.startswith("lightly."):
            pool_vals = [m.get(e.input.key) for m in ctx.custom_pool.values()]
        classes, mass = sources.categorical_mass(list(vals) + pool_vals)
        pool_mass = mass[len(vals) :].sum(axis=0) if pool_vals else None
        return Factor(e, classes=classes, mass=mass[: len(vals)], pool_mass=pool_mass)
    task = _task(ctx, e)
    classes = task.class_names
    width = max([len(classes)] + [len(p.get("probabilities") or []) for r in task.records for p in (r or [])])
    classes = classes + [f"class {i}" for i in range(len(classes), width)]
    mass = sc.class_distribution(task.records, task.task_type, len(classes))
    pool_mass = None
    if ctx.pool_task is not None:
        pool = ctx.pool_task(task.name)
        if pool is not None:
            pool_mass = sc.class_distribution(pool.records, pool.task_type, len(classes)).sum(axis=0)
    return Factor(e, classes=classes, mass=mass, pool_mass=pool_mass)
