"""Object predictions (boxes, class, score) per sample: the pretag phase's artifact and Lightly's layout.

One prediction is Lightly's object-detection record, ``{"category_id": int, "bbox": [x, y, w, h],
"score": float}`` (pixels of the upright image, ``x, y`` the top-left corner). A sample's predictions
are ``{"file_name": <sample name>, "predictions": [...]}``, exactly the content of one file of Lightly's
``.lightly/predictions/<task>/`` folder.

The artifact is a folder, every file written atomically:

- ``meta.json``: ``{"format": "kurate.predictions/1", "active": bool, "source": str, "root": str,
  "count": N, "task_type": "object-detection", "categories": [{"id", "name"}], ...}`` plus statistics;
  ``active`` is False when pretagging is off (then there is nothing else);
- ``predictions.jsonl``: one sample per line, in the order of the clean list;
- ``debug/``: images with the boxes drawn (``pretagging_debug``).

Pure Python (no torch), so the select and export images read it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from kurate.errors import KurateError
from kurate.io import storage
from kurate.io.names import UnsafeNameError, inside

FORMAT = "kurate.predictions/1"
TASK_TYPE = "object-detection"
META = "meta.json"
LINES = "predictions.jsonl"
DEBUG_DIR = "debug"

Prediction = dict[str, Any]


class BadPredictions(ValueError):
    """A prediction record that does not follow the format; the message says what is wrong."""


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


def clean_prediction(p: Any) -> Prediction:
    """A validated, canonical prediction (rounded floats) or :class:`BadPredictions`."""
    if not isinstance(p, dict):
        raise BadPredictions(f"a prediction must be an object, got {type(p).__name__}")
    cid = p.get("category_id")
    if isinstance(cid, bool) or not isinstance(cid, int) or cid < 0:
        raise BadPredictions(f"category_id must be an int >= 0, got {cid!r}")
    box = p.get("bbox")
    if not isinstance(box, list | tuple) or len(box) != 4 or not all(_number(v) for v in box):
        raise BadPredictions(f"bbox must be [x, y, width, height] numbers, got {box!r}")
    if box[2] < 0 or box[3] < 0:
        raise BadPredictions(f"bbox width and height must be >= 0, got {box!r}")
    score = p.get("score", 1.0)
    if not _number(score) or not 0 <= float(score) <= 1:
        raise BadPredictions(f"score must be a number in [0, 1], got {score!r}")
    return {
        "category_id": int(cid),
        "bbox": [round(float(v), 2) for v in box],
        "score": round(float(score), 4),
    }


def clean_record(data: Any, name: str | None = None) -> tuple[str, list[Prediction]]:
    """``(file_name, predictions)`` of one Lightly prediction file's content; ``name`` if it has none."""
    if not isinstance(data, dict):
        raise BadPredictions(f"expected an object with file_name and predictions, got {type(data).__name__}")
    file_name = data.get("file_name", name)
    if not isinstance(file_name, str) or not file_name:
        raise BadPredictions(f"file_name must be a non-empty string, got {file_name!r}")
    preds = data.get("predictions")
    if not isinstance(preds, list):
        raise BadPredictions(f"predictions must be a list, got {type(preds).__name__}")
    return file_name, [clean_prediction(p) for p in preds]


def categories_from(value: Any, where: str) -> list[dict[str, Any]]:
    """``[{"id", "name"}]`` sorted by id.

    From a list of names (index = id), a mapping ``{id: name}`` or Lightly's ``[{"id": .., "name": ..}]``.
    """
    out: dict[int, str] = {}
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
        try:
            items = [(v["id"], v["name"]) for v in value]
        except KeyError:
            raise BadPredictions(f"{where}: each category needs an 'id' and a 'name'") from None
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        raise BadPredictions(f"{where}: categories must be a list of names or a mapping id -> name")
    for k, v in items:
        try:
            cid = int(k)
        except (TypeError, ValueError):
            raise BadPredictions(f"{where}: category id {k!r} is not an integer") from None
        if cid < 0 or cid in out or not isinstance(v, str) or not v:
            raise BadPredictions(f"{where}: bad or repeated category {k!r}: {v!r}")
        out[cid] = v
    return [{"id": k, "name": out[k]} for k in sorted(out)]


def category_names(categories: list[dict[str, Any]]) -> dict[int, str]:
    """Id -> name (ids the categories do not name are shown as ``class <id>``)."""
    return {int(c["id"]): str(c["name"]) for c in categories}


def kept_classes(
    categories: list[dict[str, Any]], classes: Sequence[str] | None
) -> tuple[set[int] | None, list[dict[str, Any]]]:
    """The category ids that a ``classes`` setting (names) keeps (None: all) and the categories left."""
    if not classes:
        return None, list(categories)
    wanted = set(classes)
    kept = [c for c in categories if str(c["name"]) in wanted]
    return {int(c["id"]) for c in kept}, kept


def name_of(cid: int, names: dict[int, str]) -> str:
    """The display name of category ``cid``."""
    return names.get(cid, f"class {cid}")


# --------------------------------------------------------------------------- the artifact


def write(
    path: str,
    names: Iterable[str],
    preds: Iterable[list[Prediction]],
    meta: dict[str, Any],
    sizes: Sequence[Sequence[int]] | None = None,
) -> dict[str, Any]:
    """Write the artifact (predictions of ``names`` in that order); returns the completed meta.

    ``sizes``: each sample's ``(width, height)`` as the detector saw it (``(0, 0)``: unknown), kept in
    its line as ``width``/``height`` (Lightly's normalised boxes are made from them).
    """
    count = 0
    objects = 0
    with_objects = 0
    per_class: dict[int, int] = {}
    size_of = iter(sizes) if sizes is not None else None
    with storage.atomic_writer(storage.join(path, LINES), "w", encoding="utf-8") as fh:
        for name, ps in zip(names, preds, strict=True):
            rec: dict[str, Any] = {"file_name": name, "predictions": ps}
            if size_of is not None:
                w, h = next(size_of)
                if w and h:
                    rec.update(width=int(w), height=int(h))
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
            count += 1
            objects += len(ps)
            with_objects += bool(ps)
            for p in ps:
                per_class[p["category_id"]] = per_class.get(p["category_id"], 0) + 1
    full = {
        "format": FORMAT,
        "active": True,
        "task_type": TASK_TYPE,
        **meta,
        "count": count,
        "objects": objects,
        "samples_with_objects": with_objects,
        "objects_per_category": {str(k): per_class[k] for k in sorted(per_class)},
    }
    storage.write_text(storage.join(path, META), json.dumps(full, indent=1))
    return full


def write_inactive(path: str, reason: str) -> dict[str, Any]:
    """The artifact of a run without pretagging: no predictions, and why."""
    meta = {"format": FORMAT, "active": False, "reason": reason, "count": 0}
    storage.write_text(storage.join(path, META), json.dumps(meta, indent=1))
    return meta


def read_meta(path: str) -> dict[str, Any]:
    """The artifact's meta.json (an inactive artifact when ``path`` is empty)."""
    if not path:
        return {"format": FORMAT, "active": False, "reason": "no predictions given", "count": 0}
    data = json.loads(storage.read_text(storage.join(path, META)))
    if data.get("format") != FORMAT:
        raise KurateError(f"{path}: not a kurate predictions artifact (format {data.get('format')!r})")
    return dict(data)


def iter_records(path: str) -> Iterator[tuple[str, list[Prediction]]]:
    """``(file_name, predictions)`` per sample, streaming (nothing when the artifact is inactive)."""
    for name, ps, _ in iter_sized_records(path):
        yield name, ps


def iter_sized_records(path: str) -> Iterator[tuple[str, list[Prediction], tuple[int, int] | None]]:
    """``(file_name, predictions, (width, height) or None)`` per sample, streaming."""
    if not path or not read_meta(path).get("active"):
        return
    with storage.local_path(storage.join(path, LINES)).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                size = (int(rec["width"]), int(rec["height"])) if "width" in rec and "height" in rec else None
                yield str(rec["file_name"]), rec["predictions"], size


def debug_dir(path: str) -> str:
    """Where the debug images of the artifact lie."""
    return storage.join(path, DEBUG_DIR)


# --------------------------------------------------------------------------- user-supplied predictions


def read_json(path: str) -> Any:
    """A JSON file's content; :class:`BadPredictions` when it is not JSON (FileNotFoundError passes)."""
    return parse_json(storage.read_bytes(path))


def parse_json(data: bytes) -> Any:
    """JSON bytes (UTF-8) as data; :class:`BadPredictions` when they are not JSON."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadPredictions(f"not valid JSON: {str(exc).splitlines()[0]}") from None


def lightly_task_dir(folder: str, task_name: str = "") -> str:
    """The task folder inside a Lightly ``.lightly/predictions`` folder (or ``folder`` if it is one).

    A folder with ``schema.json`` is a task folder; one with ``tasks.json`` lists tasks: ``task_name``
    picks one, or the only object-detection task.
    """
    if storage.is_file(storage.join(folder, "schema.json")) and not task_name:
        return folder
    for cand in (folder, storage.join(folder, ".lightly", "predictions")):
        tasks_file = storage.join(cand, "tasks.json")
        if storage.is_file(tasks_file):
            tasks = read_json(tasks_file)
            if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
                raise BadPredictions(f"{tasks_file}: expected a list of task names")
            if task_name:
                if task_name not in tasks:
                    raise BadPredictions(f"{tasks_file}: no task {task_name!r} (tasks: {', '.join(tasks)})")
                return _task_folder(cand, task_name, tasks_file)
            detection = [t for t in tasks if _task_type(_task_folder(cand, t, tasks_file)) == TASK_TYPE]
            if len(detection) != 1:
                raise BadPredictions(
                    f"{tasks_file}: {len(detection)} object-detection task(s) ({', '.join(detection)}); "
                    "name one with task_name"
                )
            return _task_folder(cand, detection[0], tasks_file)
    if task_name and storage.is_folder(_task_folder(folder, task_name, "task_name")):
        return _task_folder(folder, task_name, "task_name")
    raise BadPredictions(f"{folder}: neither a Lightly task folder (schema.json) nor a predictions folder")


def _task_folder(folder: str, task: str, source: str) -> str:
    """``folder/task``; a task name that would leave ``folder`` is a bad predictions folder."""
    try:
        return inside(folder, task)
    except UnsafeNameError as exc:
        raise BadPredictions(f"{source}: task {task!r}: {exc.reason}") from None


def _task_type(task_dir: str) -> str:
    try:
        schema = read_json(storage.join(task_dir, "schema.json"))
    except (FileNotFoundError, BadPredictions):
        return ""
    return str(schema.get("task_type", "")) if isinstance(schema, dict) else ""


def read_schema(task_dir: str) -> list[dict[str, Any]]:
    """The categories of a Lightly task folder's ``schema.json`` (object detection only)."""
    path = storage.join(task_dir, "schema.json")
    schema = read_json(path)
    if not isinstance(schema, dict):
        raise BadPredictions(f"{path}: expected an object with task_type and categories")
    if schema.get("task_type", TASK_TYPE) != TASK_TYPE:
        raise BadPredictions(f"{path}: task_type {schema.get('task_type')!r}; kurate reads object-detection")
    return categories_from(schema.get("categories", []), path)


def lightly_file_for(task_dir: str, name: str) -> str:
    """Lightly's prediction file of sample ``name``: its path with ``.json`` for the extension."""
    base = name.rsplit(".", 1)[0] if "." in name.rsplit("/", 1)[-1] else name
    return inside(task_dir, f"{base}.json")


def read_single_file(path: str) -> tuple[list[dict[str, Any]], dict[str, list[Prediction]], list[list[str]]]:
    """``(categories, {file_name: predictions}, bad records)`` of one ``.json`` or ``.jsonl`` file.

    ``.jsonl``: one ``{"file_name", "predictions"}`` object per line. ``.json``: a list of such objects,
    or ``{"categories": [...], "predictions": [...]}`` (categories as in Lightly's schema.json).
    A malformed record is listed in ``bad`` and skipped; a file that is not JSON at all is an error.
    """
    bad: list[list[str]] = []
    out: dict[str, list[Prediction]] = {}
    categories: list[dict[str, Any]] = []

    def add(rec: Any, where: str) -> None:
        try:
            name, preds = clean_record(rec)
        except BadPredictions as exc:
            label = rec.get("file_name") if isinstance(rec, dict) else None
            bad.append([str(label or where), str(exc)])
            return
        out[name] = out.get(name, []) + preds

    if path.lower().endswith(".jsonl"):
        with storage.local_copy(path) as local, open(local, encoding="utf-8") as fh:
            for i, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError as exc:
                    bad.append([f"line {i}", f"not valid JSON: {str(exc).splitlines()[0]}"])
                    continue
                add(rec, f"line {i}")
        return categories, out, bad
    data = read_json(path)
    if isinstance(data, dict):
        if "categories" in data:
            categories = categories_from(data["categories"], path)
        records = data.get("predictions")
        if not isinstance(records, list):
            raise BadPredictions(
                f"{path}: expected a 'predictions' list of {{file_name, predictions}} objects"
            )
    elif isinstance(data, list):
        records = data
    else:
        raise BadPredictions(f"{path}: expected a list of {{file_name, predictions}} objects")
    for i, rec in enumerate(records):
        add(rec, f"record {i}")
    return categories, out, bad
