"""Where the strategies' inputs come from: prediction tasks, custom metadata, query embeddings.

Each reader returns values aligned with the run's sample names, so :mod:`kurate.selection.engine` only
sees arrays:

- **prediction tasks** (SCORES, PREDICTIONS): ``lightly_pretagging`` is this run's pretag artifact; any
  other task is a folder of Lightly's ``.lightly/predictions`` layout (``tasks.json``, ``<task>/schema.json``
  with ``task_type`` classification | object-detection | semantic-segmentation and ``categories``, one
  ``<name>.json`` per image or video frame), read in parallel from a bucket. A sample without a file has
  no prediction.
- **custom metadata** (METADATA keys without ``lightly.``): Lightly's ``.lightly/metadata`` folder
  (``schema.json`` with defaults, one ``{file_name, type, metadata}`` per image, video or frame; a video's
  file applies to its frames), the lightly CLI's COCO-like ``custom_metadata`` JSON
  (``{images: [{id, file_name}], metadata: [{image_id, ...}]}``) or a CSV with a ``filename`` column
  (other columns are keys; numbers are read as numbers). Nested keys are joined with dots
  (``weather.temperature``).
- **computed metadata** (``lightly.*``): the check phase's columns of the clean list.
- **query embeddings** (SIMILARITY): a Lightly ``embeddings.csv`` or kurate embeddings artifact
  (``dataset_id``), optionally only the rows named in ``tag_name`` (a text file, one name per line;
  ``initial-tag`` = all rows); without ``dataset_id`` the queries are rows of the run's own embeddings.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kurate.errors import ConfigError, SelectionError
from kurate.io import embeddings_io, storage
from kurate.io import predictions as preds_io
from kurate.selection import scores as sc

log = logging.getLogger("kurate.select")

ALL_ROWS_TAG = "initial-tag"


@dataclass
class Task:
    """One prediction task's predictions for the run's samples."""

    name: str
    task_type: str
    categories: list[dict[str, Any]]
    records: list[list[dict[str, Any]] | None]
    missing: int = 0
    bad: list[list[str]] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        """Names by category id (``class <id>`` where the schema names none)."""
        ids = [int(c["id"]) for c in self.categories]
        width = max(ids) + 1 if ids else 0
        names = [f"class {i}" for i in range(width)]
        for c in self.categories:
            names[int(c["id"])] = str(c["name"])
        return names


def _task_record(data: Any, name: str, task_type: str) -> list[dict[str, Any]]:
    """The predictions of one Lightly prediction file (lenient on what selection does not use)."""
    if not isinstance(data, dict) or not isinstance(data.get("predictions"), list):
        raise preds_io.BadPredictions("expected an object with a 'predictions' list")
    out = []
    for p in data["predictions"]:
        if not isinstance(p, dict):
            raise preds_io.BadPredictions("each prediction must be an object")
        cid = p.get("category_id")
        if isinstance(cid, bool) or not isinstance(cid, int) or cid < 0:
            raise preds_io.BadPredictions(f"category_id must be an int >= 0, got {cid!r}")
        rec: dict[str, Any] = {"category_id": cid}
        score = p.get("score")
        if score is not None:
            if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= float(score) <= 1:
                raise preds_io.BadPredictions(f"score must be a number in [0, 1], got {score!r}")
            rec["score"] = float(score)
        probs = p.get("probabilities")
        if probs is not None:
            if (
                not isinstance(probs, list)
                or not probs
                or not all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in probs)
            ):
                raise preds_io.BadPredictions(f"probabilities must be a list of numbers >= 0, got {probs!r}")
            rec["probabilities"] = [float(v) for v in probs]
        out.append(rec)
    return out


def read_task_folder(folder: str, task: str, names: Sequence[str]) -> Task:
    """Task ``task`` of a ``.lightly/predictions`` folder for ``names`` (one file per sample, in parallel)."""
    try:
        task_dir = preds_io.lightly_task_dir(folder, task)
        schema = preds_io.read_json(storage.join(task_dir, "schema.json"))
    except FileNotFoundError:
        raise ConfigError("selection_config", f"{folder}: task {task!r} has no schema.json") from None
    except preds_io.BadPredictions as exc:
        raise ConfigError("selection_config", f"predictions of task {task!r}: {exc}") from None
    if not isinstance(schema, dict):
        raise ConfigError("selection_config", f"{task_dir}/schema.json: expected an object")
    task_type = str(schema.get("task_type", sc.DETECTION))
    if task_type not in sc.TASK_TYPES:
        raise ConfigError(
            "selection_config",
            f"{task_dir}/schema.json: task_type {task_type!r}; allowed: {', '.join(sc.TASK_TYPES)}",
        )
    try:
        categories = preds_io.categories_from(schema.get("categories", []), f"{task_dir}/schema.json")
    except preds_io.BadPredictions as exc:
        raise ConfigError("selection_config", str(exc)) from None
    paths = [preds_io.lightly_file_for(task_dir, n) for n in names]
    records: list[list[dict[str, Any]] | None] = []
    missing = 0
    bad: list[list[str]] = []
    for name, (_path, got) in zip(
        names, storage.read_many(paths, storage.read_threads(task_dir)), strict=True
    ):
        if isinstance(got, OSError):
            records.append(None)
            if isinstance(got, FileNotFoundError | IsADirectoryError):
                missing += 1
            else:
                bad.append([name, f"cannot read ({got})"])
            continue
        try:
            records.append(_task_record(preds_io.parse_json(got), name, task_type))
        except preds_io.BadPredictions as exc:
            bad.append([name, str(exc)])
            records.append(None)
    for name, why in bad[:20]:
        log.warning("task %s: skipped the predictions of %s: %s", task, name, why)
    return Task(task, task_type, categories, records, missing, bad)


def read_pretag_artifact(path: str, names: Sequence[str]) -> Task:
    """The run's pretagging predictions (task ``lightly_pretagging``) for ``names``."""
    meta = preds_io.read_meta(path)
    if not meta.get("active"):
        raise ConfigError(
            "selection_config", "task lightly_pretagging needs pretagging=True (no pretagging predictions)"
        )
    pos = {n: i for i, n in enumerate(names)}
    records: list[list[dict[str, Any]] | None] = [None] * len(names)
    for name, ps in preds_io.iter_records(path):
        i = pos.get(name)
        if i is not None:
            records[i] = ps
    missing = sum(1 for r in records if r is None)
    return Task("lightly_pretagging", sc.DETECTION, list(meta.get("categories") or []), records, missing)


# --------------------------------------------------------------------------------- custom metadata


def flatten(meta: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"weather": {"temperature": 20}}`` -> ``{"weather.temperature": 20}``."""
    out: dict[str, Any] = {}
    for k, v in meta.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _csv_value(text: str) -> Any:
    if text == "":
        return None
    try:
        v = float(text)
    except ValueError:
        return text
    return int(v) if v.is_integer() and "." not in text and "e" not in text.lower() else v


def read_custom_metadata(
    location: str, names: Sequence[str], videos: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Custom metadata of ``names``: ``{name: {dotted key: value}}`` (only names that have any).

    ``videos`` maps a frame's name to its video's name (a video's metadata applies to its frames).
    """
    if storage.is_folder(location):
        return _read_metadata_folder(location, names, videos or {})
    raw = storage.read_bytes(location)
    if location.lower().endswith(".csv"):
        return _read_metadata_csv(raw.decode("utf-8-sig"), location)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(
            "custom_metadata", f"{location}: not JSON or CSV: {str(exc).splitlines()[0]}"
        ) from None
    if not isinstance(data, dict) or "images" not in data or "metadata" not in data:
        raise ConfigError(
            "custom_metadata", f"{location}: expected Lightly's format {{images: [...], metadata: [...]}}"
        )
    files = {}
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise ConfigError("custom_metadata", f"{location}: each image needs an id and a file_name")
        files[img["id"]] = img["file_name"]
    out: dict[str, dict[str, Any]] = {}
    for m in data["metadata"]:
        if not isinstance(m, dict) or m.get("image_id") not in files:
            raise ConfigError("custom_metadata", f"{location}: a metadata entry names no known image_id")
        entry = {k: v for k, v in m.items() if k != "image_id"}
        out.setdefault(files[m["image_id"]], {}).update(flatten(entry))
    return out


def _read_metadata_csv(text: str, location: str) -> dict[str, dict[str, Any]]:
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise ConfigError("custom_metadata", f"{location}: empty CSV")
    col = next((i for i, h in enumerate(header) if h.strip() in ("filename", "filenames", "file_name")), None)
    if col is None:
        raise ConfigError("custom_metadata", f"{location}: the CSV needs a 'filename' column")
    out: dict[str, dict[str, Any]] = {}
    for row in reader:
        if not row:
            continue
        out[row[col]] = {
            h.strip(): _csv_value(v) for i, (h, v) in enumerate(zip(header, row, strict=False)) if i != col
        }
    return out


def _read_metadata_folder(
    folder: str, names: Sequence[str], videos: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    defaults: dict[str, Any] = {}
    schema_path = storage.join(folder, "schema.json")
    if storage.is_file(schema_path):
        schema = preds_io.read_json(schema_path)
        if not isinstance(schema, list):
            raise ConfigError(
                "custom_metadata",
                f"{schema_path}: expected a list of {{name, path, defaultValue, valueDataType}}",
            )
        for item in schema:
            if isinstance(item, dict) and isinstance(item.get("path"), str) and "defaultValue" in item:
                defaults[item["path"]] = item["defaultValue"]
    wanted = list(names) + sorted({v for n, v in videos.items() if n in set(names)})
    paths = [preds_io.lightly_file_for(folder, n) for n in wanted]
    found: dict[str, dict[str, Any]] = {}
    for name, (_p, got) in zip(wanted, storage.read_many(paths, storage.read_threads(folder)), strict=True):
        if isinstance(got, OSError):
            continue
        try:
            data = json.loads(got.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            log.warning("custom metadata of %s is not JSON: skipped", name)
            continue
        if isinstance(data, dict) and isinstance(data.get("metadata"), Mapping):
            found[name] = flatten(data["metadata"])
    out: dict[str, dict[str, Any]] = {}
    for n in names:
        vals = dict(defaults)
        video = videos.get(n)
        if video and video in found:
            vals.update(found[video])
        if n in found:
            vals.update(found[n])
        if vals:
            out[n] = vals
    return out


def numeric_column(values: Sequence[Any], key: str) -> np.ndarray:
    """Numbers of a metadata key (None -> NaN); a non-number is a one-line error naming the key."""
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and math.isnan(v)):
            if isinstance(v, float):
                continue
            raise SelectionError(f"metadata key {key!r} is not numeric (value {v!r}); use it with BALANCE")
        out[i] = float(v)
    return out


def categorical_mass(values: Sequence[Any]) -> tuple[list[str], np.ndarray]:
    """Class names (sorted) and a one-hot (N, C) float32 mass of categorical metadata (None: no class)."""
    labels = [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values]
    classes = sorted({lab for lab in labels if lab is not None})
    index = {c: j for j, c in enumerate(classes)}
    mass = np.zeros((len(values), len(classes)), dtype=np.float32)
    for i, lab in enumerate(labels):
        if lab is not None:
            mass[i, index[lab]] = 1.0
    return classes, mass


# --------------------------------------------------------------------------------- query embeddings


def read_query(dataset_id: str, tag_name: str, own_names: Sequence[str], own_x: np.ndarray) -> np.ndarray:
    """The query embeddings of a SIMILARITY input (rows of a file, or of the run's own embeddings)."""
    wanted: set[str] | None = None
    if tag_name and tag_name != ALL_ROWS_TAG:
        try:
            text = storage.read_text(tag_name)
        except FileNotFoundError:
            raise ConfigError(
                "selection_config", f"tag_name {tag_name!r}: no such file (a list of query file names)"
            ) from None
        wanted = {line.strip() for line in text.splitlines() if line.strip()}
    if dataset_id:
        try:
            if storage.is_folder(dataset_id):
                names, x, _meta = embeddings_io.read_embeddings(dataset_id)
            else:
                names, x = embeddings_io.read_lightly_csv(dataset_id)[:2]
        except FileNotFoundError:
            raise ConfigError(
                "selection_config", f"dataset_id {dataset_id!r}: no such embeddings file"
            ) from None
    else:
        names, x = list(own_names), own_x
    if wanted is not None:
        rows = [i for i, n in enumerate(names) if n in wanted]
        x = np.asarray(x)[rows]
    if len(x) == 0:
        raise SelectionError("SIMILARITY: the query set is empty (no row matches tag_name)")
    return np.asarray(x, dtype=np.float32)
