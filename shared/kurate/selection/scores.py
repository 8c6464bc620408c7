"""Per-sample values from predictions: Lightly's active-learning scores and class vectors.

The formulas are those of Lightly's open-source scorers (``lightly.active_learning.scorers``, removed from
the pip package in 2023), which the Worker's ``SCORES`` input names:

- classification, from the class probabilities ``p`` of a sample (rows sum to 1; a single column is a
  binary problem ``[p, 1 - p]``):
  ``uncertainty_least_confidence = 1 - max p``, ``uncertainty_margin = 1 - (p_(1) - p_(2))``,
  ``uncertainty_entropy = -sum p log2 p``; each mapped linearly (clipped) from its value for a one-hot
  vector to its value for the uniform vector onto ``[0, 1]`` (Lightly's ``normalize_to_0_1``).
- object detection (and segmentation: one segment = one object): the same three scores per object from
  its ``probabilities``, reduced to the image by the **maximum**; 0 for an image without objects.
  An object without ``probabilities`` gets Lightly's ``from_scores`` vector: its ``score`` on the
  predicted class and ``(1 - score) / max(category_id, 1)`` on each of ``max(category_id, 1) + 1`` classes.
  ``objectness_least_confidence = 1 - mean(score)`` over the objects (0 without objects);
  ``object_frequency``: per class 1 for the first object and ``frequency_penalty`` for each further one,
  mapped linearly from ``[min, max]`` over the samples onto ``[min_score, 1]``.

``CLASS_DISTRIBUTION`` (for BALANCE): classification — the probability vector (one-hot of
``category_id`` without probabilities); detection — the sum over objects of their vectors (one-hot of
``category_id`` unless ``probabilities`` are given), so objects are what is balanced.
``CATEGORY_COUNT`` (for WEIGHTS/THRESHOLD): the number of objects (of ``categories`` when given).
Pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kurate.selection import scorer

CLASSIFICATION = "classification"
DETECTION = "object-detection"
SEGMENTATION = "semantic-segmentation"
TASK_TYPES = (CLASSIFICATION, DETECTION, SEGMENTATION)

UNCERTAINTY = ("uncertainty_least_confidence", "uncertainty_margin", "uncertainty_entropy")


def _as_probs(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1:
        p = p[None, :]
    if p.shape[1] == 1:  # binary problem given as the first class's probability
        p = np.concatenate([p, 1.0 - p], axis=1)
    return p


def _raw(p: np.ndarray, name: str) -> np.ndarray:
    if name == "uncertainty_least_confidence":
        return 1.0 - p.max(axis=1)
    if name == "uncertainty_margin":
        if p.shape[1] < 2:
            return np.zeros(len(p))
        top2 = np.partition(p, -2, axis=1)
        return 1.0 - (top2[:, -1] - top2[:, -2])
    if name == "uncertainty_entropy":
        logs = np.zeros_like(p)
        np.log2(p, out=logs, where=p > 0)
        return -(p * logs).sum(axis=1)
    raise ValueError(f"unknown uncertainty score {name!r}")


def uncertainty(probs: np.ndarray, name: str) -> np.ndarray:
    """Lightly's classification score ``name`` for each row of ``probs``, normalised to ``[0, 1]``."""
    p = _as_probs(probs)
    if p.size == 0:
        return np.zeros(len(p))
    c = p.shape[1]
    sure = np.zeros((1, c))
    sure[0, 0] = 1.0
    unsure = np.full((1, c), 1.0 / c)
    lo, hi = float(_raw(sure, name)[0]), float(_raw(unsure, name)[0])
    raw = np.nan_to_num(_raw(p, name))
    if hi == lo:  # one class: nothing to be uncertain about
        return np.zeros(len(p))
    return np.interp(raw, [lo, hi], [0.0, 1.0])


def object_vector(pred: dict[str, Any], max_label: int) -> np.ndarray:
    """The class probability vector of one prediction.

    Its ``probabilities`` when given; else Lightly's ``ObjectDetectionOutput.from_scores``: with
    ``k = max(max_label, 1)`` (``max_label``: the highest ``category_id`` of the sample's predictions),
    ``(1 - score) / k`` on each of ``k + 1`` classes and ``score`` on the predicted one.
    """
    probs = pred.get("probabilities")
    if probs is not None:
        return np.asarray(probs, dtype=np.float64)
    cid = int(pred["category_id"])
    score = float(pred.get("score", 1.0))
    k = max(max_label, 1)
    vec = np.full(k + 1, (1.0 - score) / k)
    vec[cid] = score
    return vec


def sample_score(preds: Sequence[dict[str, Any]], task_type: str, name: str) -> float:
    """One sample's uncertainty score ``name`` (classification: its one prediction; else max over objects)."""
    if not preds:
        return 0.0
    if task_type == CLASSIFICATION:
        preds = preds[:1]
    max_label = max(int(p["category_id"]) for p in preds)
    rows = [object_vector(p, max_label) for p in preds]
    width = max(len(r) for r in rows)
    mat = np.zeros((len(rows), width))
    for i, r in enumerate(rows):
        mat[i, : len(r)] = r
    # Lightly scores each object with the scorer of its own vector length (one-hot/uniform of that width).
    scores = (
        [float(uncertainty(r[None, :], name)[0]) for r in rows]
        if len({len(r) for r in rows}) > 1
        else list(uncertainty(mat, name))
    )
    return float(max(scores))


def objectness_least_confidence(preds: Sequence[dict[str, Any]]) -> float:
    """``1 - mean(score)`` over the objects; 0 without objects."""
    if not preds:
        return 0.0
    return 1.0 - float(np.mean([float(p.get("score", 1.0)) for p in preds]))


def score_column(
    records: Sequence[Sequence[dict[str, Any]] | None],
    task_type: str,
    name: str,
    frequency_penalty: float = 0.25,
    min_score: float = 0.9,
) -> np.ndarray:
    """The score ``name`` of every sample (``None``: no prediction file, scored as no objects)."""
    recs = [r or [] for r in records]
    if name in UNCERTAINTY:
        return np.array([sample_score(r, task_type, name) for r in recs], dtype=np.float64)
    if name == "objectness_least_confidence":
        return np.array([objectness_least_confidence(r) for r in recs], dtype=np.float64)
    if name == "object_frequency":
        # the object-frequency scorer's own count and rescaling (kurate.selection.scorer)
        raw = np.array(
            [scorer.object_frequency([int(p["category_id"]) for p in r], frequency_penalty) for r in recs],
            dtype=np.float64,
        )
        return scorer.rescale(raw, min_score)
    raise ValueError(f"unknown score {name!r}")


def class_distribution(
    records: Sequence[Sequence[dict[str, Any]] | None], task_type: str, n_classes: int
) -> np.ndarray:
    """(N, n_classes) float32: each sample's class mass (see the module doc)."""
    out = np.zeros((len(records), n_classes), dtype=np.float32)
    for i, recs in enumerate(records):
        for p in recs or []:
            if p.get("probabilities") is not None:
                vec = np.asarray(p["probabilities"], dtype=np.float64)[:n_classes]
                out[i, : len(vec)] += vec
            else:
                cid = int(p["category_id"])
                if 0 <= cid < n_classes:
                    out[i, cid] += 1.0
            if task_type == CLASSIFICATION:
                break  # one prediction per sample
    return out


def category_count(
    records: Sequence[Sequence[dict[str, Any]] | None], category_ids: Sequence[int] | None = None
) -> np.ndarray:
    """Number of predicted objects per sample (only of ``category_ids`` when given)."""
    want = None if category_ids is None else set(int(c) for c in category_ids)
    return np.array(
        [sum(1 for p in (r or []) if want is None or int(p["category_id"]) in want) for r in records],
        dtype=np.float64,
    )
