"""What export and the report read: the run's artifacts, loaded once (:class:`RunInputs`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kurate.io import embeddings_io, filelist, timing
from kurate.pool import datapool


@dataclass
class RunInputs:
    """Everything the pipeline produced that export turns into outputs."""

    files: filelist.FileList
    clean: filelist.FileList
    corrupt: filelist.FileList
    duplicates: filelist.FileList
    selection: filelist.FileList
    emb_names: list[str]
    embeddings: np.ndarray
    emb_meta: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)  # phase → times (kurate.io.timing)
    seen: filelist.FileList | None = None  # already in the datapool: not processed (check phase)
    predictions: str = ""  # the pretag artifact ('' = none: no pretagging outputs)


def _with_training(phases: dict[str, dict[str, Any]], emb_meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Add the train phase's time (it travels in the embeddings' meta) before embed, in pipeline order."""
    seconds = (emb_meta.get("training") or {}).get("seconds")
    if "train" in phases or seconds is None:
        return phases
    train = {"phase": "train", "duration_s": round(float(seconds), 3)}
    out: dict[str, dict[str, Any]] = {}
    for name, info in phases.items():
        if name == "embed":
            out["train"] = train
        out[name] = info
    out.setdefault("train", train)
    return out


def read_inputs(
    files_in: str,
    clean_in: str,
    corrupt_in: str,
    duplicates_in: str,
    embeddings_in: str,
    selection_in: str,
    predictions_in: str = "",
) -> RunInputs:
    """Load every artifact export needs (the predictions are read when used: they can be large)."""
    names, x, meta = embeddings_io.read_embeddings(embeddings_in, mmap=False)
    return RunInputs(
        seen=datapool.read_seen(clean_in),
        files=filelist.read(files_in),
        clean=filelist.read(clean_in),
        corrupt=filelist.read(corrupt_in),
        duplicates=filelist.read(duplicates_in),
        selection=filelist.read(selection_in),
        emb_names=list(names),
        embeddings=np.asarray(x),
        emb_meta=dict(meta),
        phases=_with_training(
            timing.collect(
                [p for p in (files_in, clean_in, embeddings_in, predictions_in, selection_in) if p]
            ),
            dict(meta),
        ),
        predictions=predictions_in,
    )
