"""Lightly's pretagging requirements: only samples with enough objects of each named class are selected.

A requirements file (``pretagging_config=min_requirements.json``, or ``min_requirements`` in kurate's
pretagging settings) maps class names to a minimum number of objects, e.g. ``{"person": 1, "car": 2}``.
A sample meets it when its predictions hold at least that many objects of *every* named class
(Lightly: "Only images satisfying all declared requirements will be selected"). Samples that do not
meet it take no part in the selection (like masked samples). Pure numpy: the select image has no torch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from kurate.io import predictions as preds_io


def requirements_met(
    names: Sequence[str], predictions_path: str, requirements: dict[str, int]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Per name of ``names``: whether its predictions meet ``requirements``; and what the report says.

    A sample without predictions has no objects. A required class the predictions never name can
    only be met with a minimum of 0 (said in ``info["unknown_classes"]``).
    """
    meta = preds_io.read_meta(predictions_path)
    ids: dict[str, set[int]] = {}
    for c in meta.get("categories") or []:
        ids.setdefault(str(c["name"]), set()).add(int(c["id"]))
    pos = {n: i for i, n in enumerate(names)}
    counts: list[Counter[int]] = [Counter() for _ in names]
    for name, ps in preds_io.iter_records(predictions_path):
        i = pos.get(name)
        if i is not None:
            counts[i].update(int(p["category_id"]) for p in ps)
    ok = np.ones(len(names), dtype=bool)
    for cls, need in requirements.items():
        have = np.array([sum(c[j] for j in ids.get(cls, ())) for c in counts], dtype=np.int64)
        ok &= have >= int(need)
    info: dict[str, Any] = {
        "min_requirements": dict(requirements),
        "samples": len(names),
        "met": int(ok.sum()),
        "not_met": int((~ok).sum()),
    }
    unknown = sorted(c for c in requirements if c not in ids)
    if unknown:
        info["unknown_classes"] = unknown
    return ok, info
