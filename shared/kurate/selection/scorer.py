"""Active-learning scores from object predictions: the ``object-frequency`` scorer.

Per image, the first object of each class counts 1 and every further object of the same class adds
``frequency_penalty``: an image with many kinds of objects outranks one with many copies of one kind.
The raw scores are rescaled linearly to ``[min_score, 1]`` (lowest raw score -> ``min_score``, highest
-> 1) and weight the selection (:mod:`kurate.selection.coreset`: they scale the distance that picks the next
coreset point; under ``method=random`` the draw is weighted). Pure numpy: the select image has no torch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kurate.io import predictions as preds_io

SCORERS = ("object-frequency",)


def object_frequency(categories: Iterable[int], frequency_penalty: float) -> float:
    """Raw score of one image from the class ids of its objects (0 for an image without objects)."""
    counts = Counter(categories)
    return float(sum(1.0 + (n - 1) * frequency_penalty for n in counts.values()))


def rescale(raw: np.ndarray, min_score: float) -> np.ndarray:
    """Map ``raw`` linearly onto ``[min_score, 1]``; all-equal raw scores all become 1 (no preference)."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.size == 0:
        return raw.copy()
    lo, hi = float(raw.min()), float(raw.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.ones_like(raw)
    return min_score + (1.0 - min_score) * (raw - lo) / (hi - lo)


@dataclass
class Scores:
    """The scorer's outcome for the selection (``weights`` None when inactive, with ``reason``)."""

    active: bool
    reason: str
    weights: np.ndarray | None = None
    raw: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


def score_samples(
    names: Sequence[str],
    predictions_path: str,
    scorer: str = "object-frequency",
    frequency_penalty: float = 0.25,
    min_score: float = 0.9,
) -> Scores:
    """Scores of ``names`` (in that order) from the predictions artifact; inactive without predictions.

    Samples the artifact has no line for count as images without objects.
    """
    base = {"scorer": scorer, "frequency_penalty": float(frequency_penalty), "min_score": float(min_score)}
    if scorer in ("", "none"):
        return Scores(False, "no scorer configured (scorer='')", info=base)
    if scorer not in SCORERS:
        raise ValueError(f"unknown scorer {scorer!r}")
    meta = preds_io.read_meta(predictions_path)
    if not meta.get("active"):
        why = meta.get("reason") or "no predictions"
        return Scores(False, f"no object predictions ({why}): the selection is unweighted", info=base)
    pos = {n: i for i, n in enumerate(names)}
    raw = np.zeros(len(names), dtype=np.float64)
    found = 0
    for name, ps in preds_io.iter_records(predictions_path):
        i = pos.get(name)
        if i is not None:
            raw[i] = object_frequency([p["category_id"] for p in ps], frequency_penalty)
            found += 1
    weights = rescale(raw, float(min_score))
    info = {
        **base,
        "samples": len(names),
        "samples_with_predictions": found,
        "raw_min": float(raw.min()) if raw.size else 0.0,
        "raw_max": float(raw.max()) if raw.size else 0.0,
        "mean_input": float(weights.mean()) if weights.size else 0.0,
    }
    if raw.size and float(raw.max()) == float(raw.min()):
        info["note"] = "every sample has the same raw score: all weights are 1"
    return Scores(True, "", weights=weights, raw=raw, info=info)
