"""Lightly Worker's ``selection_config``: parse and validate it into a frozen spec.

The format is the one Lightly Worker 2.2+ documents and its API models enforce (``SelectionConfigV4``):
``{"n_samples" | "proportion_samples": ..., "strategies": [{"input": {...}, "strategy": {...}}, ...]}``.
Every problem is a :class:`~kurate.errors.ConfigError` naming the exact key
(``selection_config.strategies[1].strategy.operation``) and what is allowed, so a bad config fails at
start with one line. Keys Lightly's models do not have are refused (they forbid extra keys too).

``method=coral`` with ``active_learning.*`` (Lightly Worker 2.x) is turned into the equivalent spec by
:func:`coral_spec`, so both go through one engine (:mod:`kurate.selection.engine`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kurate.errors import ConfigError

KEY = "selection_config"

INPUT_TYPES = ("EMBEDDINGS", "SCORES", "METADATA", "PREDICTIONS", "RANDOM")
STRATEGY_TYPES = ("DIVERSITY", "WEIGHTS", "THRESHOLD", "BALANCE", "SIMILARITY", "TYPICALITY")
OPERATIONS = ("SMALLER", "SMALLER_EQUAL", "BIGGER", "BIGGER_EQUAL")
PREDICTION_NAMES = ("CLASS_DISTRIBUTION", "CATEGORY_COUNT")
DISTRIBUTIONS = ("TARGET", "UNIFORM", "INPUT")
#: Active-learning scores computed from predictions (see :mod:`kurate.selection.scores`).
SCORE_NAMES = (
    "uncertainty_least_confidence",
    "uncertainty_margin",
    "uncertainty_entropy",
    "object_frequency",
    "objectness_least_confidence",
)
#: The task name Lightly uses for its own pretagging predictions.
PRETAGGING_TASK = "lightly_pretagging"
#: Lightly's default number of neighbours for typicality (TypiClust's K).
DEFAULT_NEIGHBORS = 20
STRENGTH_LIMIT = 1e9

#: Which inputs each strategy takes (Lightly's "Input and Strategy Combinations" table).
COMBINATIONS: dict[str, tuple[str, ...]] = {
    "DIVERSITY": ("EMBEDDINGS",),
    "SIMILARITY": ("EMBEDDINGS",),
    "TYPICALITY": ("EMBEDDINGS",),
    "WEIGHTS": ("SCORES", "PREDICTIONS", "RANDOM", "METADATA"),
    "THRESHOLD": ("SCORES", "PREDICTIONS", "RANDOM", "METADATA"),
    "BALANCE": ("METADATA", "PREDICTIONS"),
}
_INPUT_KEYS: dict[str, set[str]] = {
    "EMBEDDINGS": {"type", "dataset_id", "tag_name", "task"},
    "SCORES": {"type", "task", "score"},
    "PREDICTIONS": {"type", "task", "name", "categories"},
    "METADATA": {"type", "key"},
    "RANDOM": {"type", "random_seed"},
}
_STRATEGY_KEYS: dict[str, set[str]] = {
    "DIVERSITY": {"type", "strength", "stopping_condition_minimum_distance"},
    "SIMILARITY": {"type", "strength"},
    "TYPICALITY": {"type", "strength", "num_nearest_neighbors", "stopping_condition_minimum_typicality"},
    "WEIGHTS": {"type", "strength", "stopping_condition_max_sum"},
    "THRESHOLD": {"type", "strength", "threshold", "operation"},
    "BALANCE": {"type", "strength", "target", "distribution"},
}
#: The API's camelCase aliases (pydantic ``allow_population_by_field_name``): both spellings work.
_ALIASES = {
    "nSamples": "n_samples",
    "proportionSamples": "proportion_samples",
    "lightlyPathRegex": "lightly_path_regex",
    "datasetId": "dataset_id",
    "tagName": "tag_name",
    "randomSeed": "random_seed",
    "numNearestNeighbors": "num_nearest_neighbors",
    "stoppingConditionMinimumTypicality": "stopping_condition_minimum_typicality",
    "stoppingConditionMaxSum": "stopping_condition_max_sum",
}
#: Keys of Lightly's models that kurate refuses, and why (never silently ignored).
_UNSUPPORTED = {
    "lightly_path_regex": "metadata from file paths is not supported; give the values as custom metadata",
    "targetRange": "not supported; use stopping_condition_max_sum",
    "target_range": "not supported; use stopping_condition_max_sum",
}


@dataclass(frozen=True)
class InputSpec:
    """Where a strategy's per-sample values come from."""

    type: str
    task: str = ""
    score: str = ""
    key: str = ""
    name: str = ""
    dataset_id: str = ""
    tag_name: str = ""
    random_seed: int | None = None
    categories: tuple[str, ...] = ()
    #: kurate: a column of the embeddings file (``active_learning_score_column_name``).
    column: str = ""


@dataclass(frozen=True)
class StrategySpec:
    """What a strategy does with its input."""

    type: str
    strength: float = 1.0
    min_distance: float | None = None
    threshold: float | None = None
    operation: str = ""
    target: tuple[tuple[str, float], ...] = ()
    distribution: str = ""
    num_nearest_neighbors: int = DEFAULT_NEIGHBORS
    min_typicality: float | None = None
    max_sum: float | None = None


@dataclass(frozen=True)
class Entry:
    """One ``{input, strategy}`` pair, with its place in the config (for messages and the report)."""

    index: int
    input: InputSpec
    strategy: StrategySpec

    @property
    def label(self) -> str:
        """Short human name, e.g. ``THRESHOLD on METADATA lightly.sharpness``."""
        inp = self.input
        what = inp.key or inp.score or inp.name or inp.column or ""
        if inp.task and inp.type in ("SCORES", "PREDICTIONS"):
            what = f"{inp.task}/{what}" if what else inp.task
        if inp.type == "EMBEDDINGS" and (inp.dataset_id or inp.tag_name):
            what = "query " + (inp.tag_name or inp.dataset_id)
        return f"{self.strategy.type} on {inp.type}{' ' + what if what else ''}"


@dataclass(frozen=True)
class SelectionSpec:
    """A validated selection: the budget and the strategies in config order."""

    n_samples: int | None = None
    proportion_samples: float | None = None
    entries: tuple[Entry, ...] = ()
    #: Where the spec came from (``selection_config`` or ``method=coral``), for messages and the report.
    source: str = KEY
    warnings: tuple[str, ...] = field(default=())

    def tasks(self) -> list[str]:
        """The prediction tasks the strategies read, in first-use order."""
        out: list[str] = []
        for e in self.entries:
            if e.input.task and e.input.type in ("SCORES", "PREDICTIONS") and e.input.task not in out:
                out.append(e.input.task)
        return out

    def metadata_keys(self) -> list[str]:
        """The metadata keys the strategies read, in first-use order."""
        out: list[str] = []
        for e in self.entries:
            if e.input.type == "METADATA" and e.input.key not in out:
                out.append(e.input.key)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON data in Lightly's format (what select receives and the report shows)."""
        strategies = []
        for e in self.entries:
            inp = {k: v for k, v in _fields(e.input).items() if v not in ("", None, ())}
            st = _fields(e.strategy)
            strat: dict[str, Any] = {"type": st["type"], "strength": st["strength"]}
            for ours, theirs in (
                ("min_distance", "stopping_condition_minimum_distance"),
                ("threshold", "threshold"),
                ("operation", "operation"),
                ("distribution", "distribution"),
                ("min_typicality", "stopping_condition_minimum_typicality"),
                ("max_sum", "stopping_condition_max_sum"),
            ):
                if st[ours] not in ("", None):
                    strat[theirs] = st[ours]
            if st["target"]:
                strat["target"] = dict(st["target"])
            if st["type"] == "TYPICALITY":
                strat["num_nearest_neighbors"] = st["num_nearest_neighbors"]
            if "categories" in inp:
                inp["categories"] = list(inp["categories"])
            strategies.append({"input": inp, "strategy": strat})
        out: dict[str, Any] = {"strategies": strategies}
        if self.n_samples is not None:
            out["n_samples"] = self.n_samples
        if self.proportion_samples is not None:
            out["proportion_samples"] = self.proportion_samples
        return out


def _fields(obj: Any) -> dict[str, Any]:
    return {k: getattr(obj, k) for k in obj.__dataclass_fields__}


# --------------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------------


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _mapping(value: Any, where: str, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(where, f"expected {what}, got {type(value).__name__}")
    out: dict[str, Any] = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise ConfigError(where, f"keys must be strings, got {k!r}")
        name = _ALIASES.get(k, k)
        if name in out:
            raise ConfigError(f"{where}.{k}", f"given twice (as {name!r} and its alias)")
        out[name] = v
    return out


def _check_keys(d: dict[str, Any], allowed: set[str], where: str, kind: str) -> None:
    for k in d:
        if k in _UNSUPPORTED:
            raise ConfigError(f"{where}.{k}", _UNSUPPORTED[k])
        if k not in allowed:
            raise ConfigError(
                f"{where}.{k}", f"unknown key for {kind}; allowed: {', '.join(sorted(allowed))}"
            )


def _str(d: dict[str, Any], key: str, where: str, required: bool = False) -> str:
    v = d.get(key)
    if v is None:
        if required:
            raise ConfigError(f"{where}.{key}", "missing (required here)")
        return ""
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"{where}.{key}", f"got {v!r}; allowed: a non-empty string")
    return v.strip()


def _choice(d: dict[str, Any], key: str, choices: tuple[str, ...], where: str, required: bool) -> str:
    v = d.get(key)
    if v is None:
        if required:
            raise ConfigError(f"{where}.{key}", f"missing; allowed: {', '.join(choices)}")
        return ""
    if not isinstance(v, str) or v.upper() not in choices:
        raise ConfigError(f"{where}.{key}", f"got {v!r}; allowed: {', '.join(choices)}")
    return v.upper()


def _parse_input(raw: Any, where: str) -> InputSpec:
    d = _mapping(raw, where, "a mapping with 'type' and the input's keys")
    typ = _choice(d, "type", INPUT_TYPES, where, required=True)
    _check_keys(d, _INPUT_KEYS[typ], where, f"a {typ} input")
    if typ == "EMBEDDINGS":
        if "task" in d:
            raise ConfigError(
                f"{where}.task",
                "object embeddings of a detection task are not supported by this input; "
                "use object_level.task_name for selection over object crops",
            )
        return InputSpec(
            type=typ, dataset_id=_str(d, "dataset_id", where), tag_name=_str(d, "tag_name", where)
        )
    if typ == "SCORES":
        task = _str(d, "task", where, required=True)
        score = _str(d, "score", where, required=True)
        if score not in SCORE_NAMES:
            raise ConfigError(f"{where}.score", f"got {score!r}; allowed: {', '.join(SCORE_NAMES)}")
        return InputSpec(type=typ, task=task, score=score)
    if typ == "PREDICTIONS":
        task = _str(d, "task", where, required=True)
        name = _choice(d, "name", PREDICTION_NAMES, where, required=True)
        cats = d.get("categories")
        categories: tuple[str, ...] = ()
        if cats is not None:
            if name != "CATEGORY_COUNT":
                raise ConfigError(f"{where}.categories", "only with name CATEGORY_COUNT")
            if (
                not isinstance(cats, list)
                or not cats
                or not all(isinstance(c, str) and c for c in cats)
                or len(set(cats)) != len(cats)
            ):
                raise ConfigError(
                    f"{where}.categories", f"got {cats!r}; allowed: a list of distinct class names"
                )
            categories = tuple(cats)
        return InputSpec(type=typ, task=task, name=name, categories=categories)
    if typ == "METADATA":
        return InputSpec(type=typ, key=_str(d, "key", where, required=True))
    seed = d.get("random_seed")
    if seed is not None and not _is_int(seed):
        raise ConfigError(f"{where}.random_seed", f"got {seed!r}; allowed: an integer")
    return InputSpec(type=typ, random_seed=seed)


def _number(
    d: dict[str, Any],
    key: str,
    where: str,
    lo: float | None = None,
    lo_open: bool = False,
    hi: float | None = None,
) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    ok = _is_num(v)
    if ok and lo is not None:
        ok = float(v) > lo if lo_open else float(v) >= lo
    if ok and hi is not None:
        ok = float(v) <= hi
    if not ok:
        rng = ""
        if lo is not None:
            rng = f" {'>' if lo_open else '>='} {lo:g}"
        if hi is not None:
            rng += f"{' and' if rng else ''} <= {hi:g}"
        raise ConfigError(f"{where}.{key}", f"got {v!r}; allowed: a number{rng}")
    return float(v)


def _parse_strategy(raw: Any, where: str, inp: InputSpec, input_where: str) -> StrategySpec:
    d = _mapping(raw, where, "a mapping with 'type' and the strategy's keys")
    typ = _choice(d, "type", STRATEGY_TYPES, where, required=True)
    _check_keys(d, _STRATEGY_KEYS[typ], where, f"a {typ} strategy")
    if inp.type not in COMBINATIONS[typ]:
        raise ConfigError(
            f"{input_where}.type",
            f"{inp.type} cannot be used with a {typ} strategy; {typ} takes {', '.join(COMBINATIONS[typ])}",
        )
    strength = _number(d, "strength", where, lo=-STRENGTH_LIMIT, hi=STRENGTH_LIMIT)
    strength = 1.0 if strength is None else strength
    if typ in ("DIVERSITY", "BALANCE") and strength < 0:
        raise ConfigError(
            f"{where}.strength",
            f"got {strength:g}; {typ} needs a strength >= 0 (a negative one would reward redundancy)",
        )
    if inp.type == "PREDICTIONS":
        wants = "CLASS_DISTRIBUTION" if typ == "BALANCE" else "CATEGORY_COUNT"
        if inp.name != wants:
            raise ConfigError(
                f"{input_where}.name", f"{typ} takes PREDICTIONS with name {wants}, got {inp.name}"
            )
    if typ in ("SIMILARITY",) and not (inp.dataset_id or inp.tag_name):
        raise ConfigError(
            input_where, "SIMILARITY needs query embeddings: set dataset_id (a file) and/or tag_name"
        )
    if typ in ("DIVERSITY", "TYPICALITY") and (inp.dataset_id or inp.tag_name):
        raise ConfigError(input_where, f"{typ} works on the run's own embeddings: remove dataset_id/tag_name")
    spec = StrategySpec(type=typ, strength=strength)
    if typ == "DIVERSITY":
        md = _number(d, "stopping_condition_minimum_distance", where, lo=0)
        return StrategySpec(type=typ, strength=strength, min_distance=md)
    if typ == "TYPICALITY":
        k = d.get("num_nearest_neighbors", DEFAULT_NEIGHBORS)
        if not _is_int(k) or k < 2:
            raise ConfigError(f"{where}.num_nearest_neighbors", f"got {k!r}; allowed: an int >= 2")
        mt = _number(d, "stopping_condition_minimum_typicality", where, lo=0, lo_open=True, hi=1)
        return StrategySpec(type=typ, strength=strength, num_nearest_neighbors=int(k), min_typicality=mt)
    if typ == "WEIGHTS":
        ms = _number(d, "stopping_condition_max_sum", where, lo=0)
        return StrategySpec(type=typ, strength=strength, max_sum=ms)
    if typ == "THRESHOLD":
        if "threshold" not in d:
            raise ConfigError(f"{where}.threshold", "missing (required for THRESHOLD)")
        thr = _number(d, "threshold", where)
        op = _choice(d, "operation", OPERATIONS, where, required=True)
        return StrategySpec(type=typ, strength=strength, threshold=thr, operation=op)
    if typ == "BALANCE":
        return _parse_balance(d, where, strength)
    return spec


def _parse_balance(d: dict[str, Any], where: str, strength: float) -> StrategySpec:
    target = d.get("target")
    dist = _choice(d, "distribution", DISTRIBUTIONS, where, required=False)
    if not dist:
        dist = "TARGET" if target is not None else ""
        if not dist:
            raise ConfigError(
                f"{where}.target", "missing; give a target {class: share} or distribution UNIFORM or INPUT"
            )
    if dist != "TARGET":
        if target is not None:
            raise ConfigError(f"{where}.target", f"not with distribution {dist} (the target is implied)")
        return StrategySpec(type="BALANCE", strength=strength, distribution=dist)
    if not isinstance(target, Mapping) or not target:
        raise ConfigError(f"{where}.target", f"got {target!r}; allowed: a mapping class -> share in [0, 1]")
    items: list[tuple[str, float]] = []
    for k, v in target.items():
        name = str(k)
        if not name or not _is_num(v) or not 0 <= float(v) <= 1:
            raise ConfigError(f"{where}.target.{name}", f"got {v!r}; allowed: a share in [0, 1]")
        items.append((name, float(v)))
    total = sum(v for _, v in items)
    if total > 1 + 1e-6:
        raise ConfigError(f"{where}.target", f"the shares sum to {total:g}; allowed: at most 1")
    if total <= 0:
        raise ConfigError(f"{where}.target", "the shares sum to 0; name at least one class with a share > 0")
    return StrategySpec(type="BALANCE", strength=strength, target=tuple(items), distribution="TARGET")


def parse(raw: Any, where: str = KEY) -> SelectionSpec:
    """Validate ``raw`` (the ``selection_config`` mapping) into a :class:`SelectionSpec`.

    Raises :class:`ConfigError` naming the first bad key (``selection_config.strategies[0].input.type``).
    """
    d = _mapping(raw, where, "a mapping with n_samples or proportion_samples, and strategies")
    _check_keys(d, {"n_samples", "proportion_samples", "strategies"}, where, "selection_config")
    n = d.get("n_samples")
    p = d.get("proportion_samples")
    if n is not None and not (_is_int(n) and (n == -1 or n >= 1)):
        raise ConfigError(f"{where}.n_samples", f"got {n!r}; allowed: an int >= 1 (or -1: not set)")
    if n == -1:
        n = None
    if p is not None and not (_is_num(p) and 0 < float(p) <= 1):
        raise ConfigError(f"{where}.proportion_samples", f"got {p!r}; allowed: a number in (0, 1]")
    if n is not None and p is not None:
        raise ConfigError(where, "set either n_samples or proportion_samples, not both")
    strategies = d.get("strategies")
    if not isinstance(strategies, list) or not strategies:
        raise ConfigError(f"{where}.strategies", "missing or empty; allowed: a list of {input, strategy}")
    entries: list[Entry] = []
    for i, raw_entry in enumerate(strategies):
        ew = f"{where}.strategies[{i}]"
        e = _mapping(raw_entry, ew, "a mapping with 'input' and 'strategy'")
        _check_keys(e, {"input", "strategy"}, ew, "a strategy entry")
        for part in ("input", "strategy"):
            if part not in e:
                raise ConfigError(f"{ew}.{part}", "missing")
        inp = _parse_input(e["input"], f"{ew}.input")
        strat = _parse_strategy(e["strategy"], f"{ew}.strategy", inp, f"{ew}.input")
        entries.append(Entry(i, inp, strat))
    has_stop = any(
        e.strategy.min_distance is not None
        or e.strategy.min_typicality is not None
        or e.strategy.max_sum is not None
        for e in entries
    )
    if n is None and p is None and not has_stop:
        raise ConfigError(
            where, "set n_samples or proportion_samples (or a stopping condition of a strategy)"
        )
    return SelectionSpec(
        n_samples=n, proportion_samples=None if p is None else float(p), entries=tuple(entries)
    )


def coral_spec(
    n_samples: int | None,
    min_distance: float | None,
    task_name: str,
    score_name: str,
    column: str = "",
    diversity: bool = True,
) -> SelectionSpec:
    """``method=coral``: the coreset weighted by an active-learning score (Lightly Worker 2.x).

    Equivalent to ``[EMBEDDINGS/DIVERSITY (min distance), SCORES/WEIGHTS]``: each pick maximises
    ``distance to the selected set x score`` (both strength 1), the way the object-frequency scorer
    weights the coreset. The score comes from ``task_name``/``score_name`` (predictions) or, with the
    older ``active_learning_score_column_name``, from that column of the embeddings file.
    ``diversity=False`` is ``method=active_learning``: the highest scores, without the coreset.
    """
    if column:
        scores = InputSpec(type="SCORES", column=column)
    else:
        if not task_name:
            raise ConfigError(
                "active_learning.task_name",
                "method=coral needs the prediction task (active_learning.task_name) or "
                "active_learning_score_column_name (a column of the embeddings file)",
            )
        score = score_name or "uncertainty_margin"
        if score not in SCORE_NAMES:
            raise ConfigError(
                "active_learning.score_name", f"got {score!r}; allowed: {', '.join(SCORE_NAMES)}"
            )
        scores = InputSpec(type="SCORES", task=task_name, score=score)
    if not diversity:
        return SelectionSpec(
            n_samples=n_samples,
            entries=(Entry(0, scores, StrategySpec(type="WEIGHTS")),),
            source="method=active_learning",
        )
    entries = (
        Entry(0, InputSpec(type="EMBEDDINGS"), StrategySpec(type="DIVERSITY", min_distance=min_distance)),
        Entry(1, scores, StrategySpec(type="WEIGHTS")),
    )
    return SelectionSpec(n_samples=n_samples, entries=entries, source="method=coral")
