"""The train phase's model artifact, readable without torch (the embed phase only needs a path).

A folder with ``meta.json`` (written last: its presence marks a complete artifact) holding
``{"format": "kurate.model/1", "trained": bool, ...}``; when ``trained``, also ``model.ckpt``, the
trained network as a lightly-ssl-train style checkpoint (see
:func:`kurate.models.training.checkpoint_payload`).
With training disabled the artifact is only the marker ``{"trained": false}``: the embed phase then
uses ``checkpoint`` / pretrained / random weights as without a train phase.
"""

from __future__ import annotations

import json
from typing import Any

from kurate.errors import KurateError
from kurate.io import storage

FORMAT = "kurate.model/1"
MODEL_FILE = "model.ckpt"
META_FILE = "meta.json"


def model_file(path: str) -> str:
    """Where the checkpoint of the model artifact at ``path`` goes."""
    return storage.join(path, MODEL_FILE)


def write_meta(path: str, meta: dict[str, Any]) -> None:
    """Finish the artifact at ``path``: write ``meta.json`` (after ``model.ckpt``, if any)."""
    storage.makedirs(path)
    data = {"format": FORMAT, **meta}
    storage.write_text(storage.join(path, META_FILE), json.dumps(data, indent=1, sort_keys=True, default=str))


def read(path: str) -> tuple[str, dict[str, Any]]:
    """``(checkpoint file or '', meta)``; ``''`` when there is no artifact or training was disabled."""
    if not path:
        return "", {}
    meta_uri = storage.join(path, META_FILE)
    if not storage.exists(meta_uri):
        raise KurateError(f"model artifact {path} is incomplete (no {META_FILE})")
    meta = json.loads(storage.read_text(meta_uri))
    if meta.get("format") != FORMAT:
        raise KurateError(f"model artifact {path}: unknown format {meta.get('format')!r}")
    if not meta.get("trained"):
        return "", meta
    ckpt = model_file(path)
    if not storage.exists(ckpt):
        raise KurateError(f"model artifact {path} says trained but has no {MODEL_FILE}")
    return ckpt, meta
