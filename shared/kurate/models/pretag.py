"""Pretagging: object predictions for every clean sample, from a detector or a user's file.

``pretagging_config`` (relative to ``output_dir``, like ``checkpoint``) names a YAML/JSON file in one of
two formats; paths inside it are relative to that file's folder.

**Lightly's requirements file** (``min_requirements.json``): a mapping ``{class name: minimum number of
objects}``, e.g. ``{"person": 1, "car": 2}``. It runs the **built-in detector** (as Lightly's pretagging
did, see :func:`builtin_settings`) and only samples satisfying *every* requirement -- at least that many
objects of each named class -- are selected (Lightly: "Only images satisfying all declared requirements
will be selected"). ``pretagging=True`` without ``pretagging_config`` runs the built-in detector with no
requirements.

**kurate's settings**, two sources::

    source: model                                   # a torchvision detector
    architecture: fasterrcnn_mobilenet_v3_large_320_fpn
    checkpoint: detector.pt                         # omitted: torchvision's COCO weights, found locally
    categories: [__background__, person, car]       # the model's label ids: list index = id
    score_threshold: 0.5                            # keep predictions scoring at least this

    source: predictions                             # predictions the user made elsewhere
    predictions: lightly/.lightly/predictions       # Lightly's folder, a task folder, or a .json/.jsonl file
    task_name: my-detector                          # which task, if the folder has several

Both take ``classes`` (keep only predictions of these class names) and ``min_requirements`` (the
requirements above). :func:`load_settings` validates the file when the run is planned (one line naming
the key on error), so a bad file stops the run before anything happens. This module is pure Python:
torch is imported only by :mod:`kurate.models.detection`, when the model source runs.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from typing import Any

from kurate.errors import ConfigError
from kurate.io import filelist, storage
from kurate.io import predictions as preds_io
from kurate.io.names import UnsafeNameError, inside
from kurate.models import coco

log = logging.getLogger("kurate.models.pretag")

SOURCES = ("model", "predictions")
#: torchvision detection builders kurate constructs (``weights=None, weights_backbone=None``), plus
#: ``fcos_tiny``, a small FCOS for simple data that trains in seconds on a CPU (see kurate.models.detection).
ARCHITECTURES = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
    "fcos_tiny",
)
DEVICES = ("auto", "cpu", "cuda")
_COMMON = {"source", "score_threshold", "categories", "debug_max_images", "classes", "min_requirements"}
_MODEL_KEYS = _COMMON | {"architecture", "checkpoint", "model_options", "batch_size", "num_workers", "device"}
_PRED_KEYS = _COMMON | {"predictions", "task_name"}
DEFAULT_DEBUG_IMAGES = 100
KEY = "pretagging_config"


def _fail(path: str, key: str, allowed: str) -> ConfigError:
    return ConfigError(KEY, f"{path}: {key}: {allowed}" if key else f"{path}: {allowed}")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def builtin_settings(requirements: dict[str, int] | None = None, file: str = "") -> dict[str, Any]:
    """The built-in detector (``pretagging=True`` alone, or with Lightly's requirements file ``file``).

    Lightly's was a Faster R-CNN with a ResNet-50 backbone detecting seven road classes; kurate's is
    torchvision's COCO Faster R-CNN ResNet-50 FPN (v2 weights, ``coco.BUILTIN_ARCHITECTURE``) keeping
    those seven classes. Its weights are found locally, never downloaded (:mod:`kurate.models.coco`).
    """
    return {
        "source": "model",
        "builtin": True,
        "file": file,
        "architecture": coco.BUILTIN_ARCHITECTURE,
        "checkpoint": "",
        "weights": "coco",
        "categories": coco.categories(),
        "classes": list(coco.LIGHTLY_CLASSES),
        "score_threshold": 0.5,
        "debug_max_images": DEFAULT_DEBUG_IMAGES,
        "model_options": {},
        "batch_size": 4,
        "num_workers": 0,
        "device": "auto",
        "min_requirements": dict(requirements or {}),
    }


def check_weights_here(settings: dict[str, Any]) -> None:
    """Refuse at start (exit 2) when the COCO weights ``settings`` need are not on this machine.

    For runs on this machine only: a cluster's pretag image brings its own (baked) weights.
    """
    if settings.get("weights") == "coco" and not coco.find_weights(str(settings["architecture"])):
        raise ConfigError("pretagging", coco.missing_weights_hint(str(settings["architecture"])))


def task_settings(task: str, bases: Sequence[str]) -> dict[str, Any]:
    """Settings reading the prediction task ``task`` of Lightly's ``.lightly/predictions`` folder.

    For ``object_level.task_name``: the folder is looked for under each of ``bases`` in turn (the
    input, then the output location, as Lightly kept it in its datasources); the task must be listed in
    ``tasks.json`` (or be a folder there) and hold an object-detection ``schema.json``.
    """
    key = "object_level.task_name"
    tried = []
    for base in bases:
        folder = storage.join(base, ".lightly", "predictions")
        tried.append(folder)
        listed: list[str] = []
        if storage.is_file(storage.join(folder, "tasks.json")):
            try:
                found = preds_io.read_json(storage.join(folder, "tasks.json"))
            except preds_io.BadPredictions as exc:
                raise ConfigError(key, f"{folder}/tasks.json: {exc}") from None
            listed = [str(t) for t in found] if isinstance(found, list) else []
        if task not in listed and not storage.is_folder(storage.join(folder, task)):
            continue
        try:
            task_dir = preds_io.lightly_task_dir(folder, task)
            categories = preds_io.read_schema(task_dir)
        except preds_io.BadPredictions as exc:
            raise ConfigError(key, str(exc)) from None
        except FileNotFoundError:
            raise ConfigError(key, f"{folder}/{task}: no schema.json (task_type, categories)") from None
        return {
            "source": "predictions",
            "file": "",
            "predictions": folder,
            "task_name": task,
            "score_threshold": 0.0,
            "debug_max_images": 0,
            "categories": categories,
            "min_requirements": {},
        }
    raise ConfigError(
        key,
        f"no prediction task {task!r}: looked for Lightly's .lightly/predictions/ in {' and '.join(tried)} "
        "(tasks.json, <task>/schema.json and one JSON per image)",
    )


def is_requirements_file(data: Any) -> bool:
    """Lightly's requirements file: a mapping ``{class name: minimum count}`` (it has no ``source``)."""
    return (
        isinstance(data, dict)
        and "source" not in data
        and all(isinstance(k, str) for k in data)
        and all(_int(v) for v in data.values())
    )


def _requirements(value: Any, path: str, key: str, known: Sequence[str] | None) -> dict[str, int]:
    """``{class name: minimum number of objects}``, the names checked against ``known`` when given."""
    if not isinstance(value, dict):
        raise _fail(path, key, "a mapping {class name: minimum number of objects}")
    out: dict[str, int] = {}
    for k, v in value.items():
        where = f"{key}.{k}" if key else repr(k)
        if not isinstance(k, str) or not k:
            raise _fail(path, where, "a class name")
        if not (_int(v) and v >= 0):
            raise _fail(path, where, f"got {v!r}; allowed: an int >= 0 (the minimum number of objects)")
        if known is not None and k not in known:
            raise _fail(path, where, f"not a class of the detector; allowed: {', '.join(known)}")
        out[k] = int(v)
    return out


def load_settings(path: str) -> dict[str, Any]:
    """The validated settings of the file ``path`` (paths in it made absolute), or :class:`ConfigError`.

    ``path`` empty: the built-in detector (``pretagging=True`` alone).
    """
    import yaml

    if not path:
        return builtin_settings()
    try:
        text = storage.read_text(path)
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(KEY, f"{path} does not exist or is not a file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail(path, "", f"not valid YAML/JSON: {str(exc).splitlines()[0]}") from None
    if is_requirements_file(data):
        names = [str(c["name"]) for c in coco.categories(coco.LIGHTLY_CLASSES)]
        return builtin_settings(_requirements(data, path, "", sorted(names)), file=path)
    if not isinstance(data, dict):
        raise _fail(
            path,
            "",
            "expected Lightly's requirements file ({class name: minimum count}) or kurate's settings "
            "(source: model | predictions, ...)",
        )
    source = data.get("source")
    if source not in SOURCES:
        raise _fail(
            path,
            "source",
            f"got {source!r}; allowed: {', '.join(SOURCES)} (or a requirements file {{class name: count}})",
        )
    allowed = _MODEL_KEYS if source == "model" else _PRED_KEYS
    for key in data:
        if key not in allowed:
            raise _fail(
                path, str(key), f"unknown key for source {source}; allowed: {', '.join(sorted(allowed))}"
            )
    here = os.path.dirname(os.path.abspath(path)) if not storage.is_remote(path) else path.rsplit("/", 1)[0]

    def file_key(key: str, folder_ok: bool) -> str:
        v = data.get(key)
        if not isinstance(v, str) or not v:
            raise _fail(path, key, "missing; a path (relative to this file's folder, or absolute)")
        full = storage.resolve_relative(v, here)
        ok = storage.is_file(full) or (folder_ok and storage.is_folder(full))
        if not ok:
            raise _fail(path, key, f"{full} does not exist" + ("" if folder_ok else " or is not a file"))
        return full

    out: dict[str, Any] = {"source": source, "file": path}
    schema_cats: list[dict[str, Any]] = []
    thr_default = 0.5 if source == "model" else 0.0
    thr = data.get("score_threshold", thr_default)
    if not (isinstance(thr, int | float) and not isinstance(thr, bool) and 0 <= thr <= 1):
        raise _fail(path, "score_threshold", f"got {thr!r}; allowed: a number in [0, 1]")
    out["score_threshold"] = float(thr)
    dbg = data.get("debug_max_images", DEFAULT_DEBUG_IMAGES)
    if not (_int(dbg) and dbg >= -1):
        raise _fail(path, "debug_max_images", f"got {dbg!r}; allowed: an int >= 0, or -1 (all)")
    out["debug_max_images"] = int(dbg)
    cats = data.get("categories")
    if cats is not None:
        try:
            out["categories"] = preds_io.categories_from(cats, "categories")
        except preds_io.BadPredictions as exc:
            raise _fail(path, "categories", str(exc).split(": ", 1)[-1]) from None
    else:
        out["categories"] = []
    if source == "model":
        arch = data.get("architecture")
        if arch not in ARCHITECTURES:
            raise _fail(path, "architecture", f"got {arch!r}; allowed: {', '.join(ARCHITECTURES)}")
        out["architecture"] = arch
        if data.get("checkpoint") is None:  # torchvision's COCO weights, found on this machine
            if arch not in coco.WEIGHT_FILES:
                raise _fail(path, "checkpoint", f"missing; {arch} has no COCO weights, name a checkpoint")
            out.update(checkpoint="", weights="coco")
            out["categories"] = out["categories"] or coco.categories()
        else:
            out["checkpoint"] = file_key("checkpoint", folder_ok=False)
        if not out["categories"]:
            raise _fail(path, "categories", "missing; the model's class names, list index = label id")
        opts = data.get("model_options", {}) or {}
        if not isinstance(opts, dict) or not all(isinstance(k, str) for k in opts):
            raise _fail(path, "model_options", "a mapping of keyword arguments of the torchvision builder")
        out["model_options"] = dict(opts)
        bs = data.get("batch_size", 8)
        if not (_int(bs) and bs >= 1):
            raise _fail(path, "batch_size", f"got {bs!r}; allowed: an int >= 1")
        nw = data.get("num_workers", 0)
        if not (_int(nw) and nw >= -1):
            raise _fail(path, "num_workers", f"got {nw!r}; allowed: -1 (all cores), 0 or more")
        dev = data.get("device", "auto")
        if dev not in DEVICES:
            raise _fail(path, "device", f"got {dev!r}; allowed: {', '.join(DEVICES)}")
        out.update(batch_size=int(bs), num_workers=int(nw), device=str(dev))
    else:
        out["predictions"] = file_key("predictions", folder_ok=True)
        task = data.get("task_name", "")
        if not isinstance(task, str):
            raise _fail(path, "task_name", f"got {task!r}; allowed: a task folder name")
        out["task_name"] = task
        p = out["predictions"]
        if storage.is_file(p) and not p.lower().endswith((".json", ".jsonl")):
            raise _fail(path, "predictions", f"{p}: allowed: a folder, or a .json / .jsonl file")
        if not out["categories"] and storage.is_folder(p):  # a Lightly folder names its classes
            try:
                schema_cats = preds_io.read_schema(preds_io.lightly_task_dir(p, task))
            except preds_io.BadPredictions as exc:
                raise _fail(path, "predictions", str(exc)) from None
            except FileNotFoundError:
                pass
    names_of = out["categories"] or schema_cats
    known = [str(c["name"]) for c in names_of] or None
    classes = data.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise _fail(path, "classes", "a list of class names to keep")
        bad = [c for c in classes if known is not None and c not in known]
        if bad:
            raise _fail(
                path,
                "classes",
                f"{bad[0]!r} is not a class of the detector; allowed: {', '.join(known or [])}",
            )
        out["classes"] = list(classes)
        known = list(classes)
    out["min_requirements"] = _requirements(
        data.get("min_requirements") or {}, path, "min_requirements", known
    )
    return out


# --------------------------------------------------------------------------- decoding samples


# --------------------------------------------------------------------------- debug images

_PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (170, 110, 40),
]


def draw_boxes(img: Any, preds: list[preds_io.Prediction], names: dict[int, str]) -> Any:
    """A copy of ``img`` with each prediction's box, class name and score drawn on it."""
    from PIL import ImageDraw

    out = img.convert("RGB").copy()
    d = ImageDraw.Draw(out)
    width = max(1, round(min(out.size) / 150))
    for p in preds:
        x, y, w, h = p["bbox"]
        x0, y0 = round(x), round(y)  # whole pixels: PIL rounds float corners apart for sub-pixel boxes
        x1, y1 = max(x0, round(x + w) - 1), max(y0, round(y + h) - 1)
        colour = _PALETTE[p["category_id"] % len(_PALETTE)]
        d.rectangle([x0, y0, x1, y1], outline=colour, width=width)
        label = f"{preds_io.name_of(p['category_id'], names)} {p['score']:.2f}"
        tx, ty = x0, max(0, y0 - 11)
        box = d.textbbox((tx, ty), label)
        d.rectangle(box, fill=colour)
        d.text((tx, ty), label, fill=(0, 0, 0))
    return out


def debug_names(names: Sequence[str]) -> list[str]:
    """File names of the debug images of ``names`` (JPEG; the sample's path with ``.jpg``)."""
    stems = [(n.rsplit(".", 1)[0] if "." in n.rsplit("/", 1)[-1] else n) + ".jpg" for n in names]
    if len(set(stems)) != len(stems):  # a.png and a.jpg: keep the full names
        return [f"{n}.jpg" for n in names]
    return stems


class DebugWriter:
    """Writes up to ``limit`` (-1: all) annotated images into ``out_dir``, in the order they come."""

    def __init__(self, out_dir: str, names: Sequence[str], categories: list[dict[str, Any]], limit: int):
        self.out_dir = out_dir
        self.limit = len(names) if limit < 0 else min(limit, len(names))
        self.rows = set(range(self.limit))  # the first `limit` samples of the list
        self.targets = debug_names(list(names)[: self.limit])
        self.names = preds_io.category_names(categories)
        self.written = 0

    def wants(self, row: int) -> bool:
        """Whether sample ``row`` gets a debug image."""
        return row in self.rows

    def add(self, row: int, img: Any, preds: list[preds_io.Prediction]) -> None:
        """Draw and save the debug image of sample ``row``."""
        if not self.wants(row) or img is None:
            return
        try:
            target = inside(self.out_dir, self.targets[row])  # never outside out_dir
        except UnsafeNameError as exc:
            log.warning("no debug image for %r: %s", self.targets[row], exc.reason)
            return
        buf = io.BytesIO()
        draw_boxes(img, preds, self.names).save(buf, format="JPEG", quality=90)
        storage.write_bytes(target, buf.getvalue())
        self.written += 1


# --------------------------------------------------------------------------- the predictions source


def from_predictions(
    files: filelist.FileList, settings: dict[str, Any]
) -> tuple[list[list[preds_io.Prediction]], dict[str, Any]]:
    """Predictions of every sample of ``files`` from the user's file or Lightly folder, and statistics.

    A sample without a prediction file (or record) has no objects and is counted as ``missing``; a file
    that is not valid JSON or not in the format is reported in ``bad_files`` and skipped.
    """
    src = str(settings["predictions"])
    categories = list(settings.get("categories") or [])
    thr = float(settings.get("score_threshold", 0.0))
    names = list(files.names)
    out: list[list[preds_io.Prediction]] = []
    missing: list[str] = []
    bad: list[list[str]] = []
    unmatched = 0
    try:
        if storage.is_folder(src):
            task_dir = preds_io.lightly_task_dir(src, str(settings.get("task_name") or ""))
            if not categories and storage.is_file(storage.join(task_dir, "schema.json")):
                categories = preds_io.read_schema(task_dir)
            where = f"Lightly predictions {task_dir}"
            paths = [preds_io.lightly_file_for(task_dir, name) for name in names]
            # one small file per sample: read them in parallel from a bucket (in list order)
            for name, (path, got) in zip(
                names, storage.read_many(paths, storage.read_threads(task_dir)), strict=True
            ):
                ps: list[preds_io.Prediction] = []
                if isinstance(got, FileNotFoundError | IsADirectoryError):
                    missing.append(name)
                elif isinstance(got, OSError):
                    bad.append([name, f"{path[len(task_dir) + 1 :]}: cannot read ({got})"])
                else:
                    try:
                        _, ps = preds_io.clean_record(preds_io.parse_json(got), name)
                    except preds_io.BadPredictions as exc:
                        bad.append([name, f"{path[len(task_dir) + 1 :]}: {exc}"])
                        ps = []
                out.append(ps)
        else:
            cats, records, bad = preds_io.read_single_file(src)
            categories = categories or cats
            where = f"predictions file {src}"
            known = set(names)
            unmatched = sum(1 for n in records if n not in known)
            for name in names:
                if name not in records:
                    missing.append(name)
                out.append(records.get(name, []))
    except preds_io.BadPredictions as exc:
        raise ConfigError(KEY, f"{settings.get('file', '')}: predictions: {exc}") from None
    keep, categories = preds_io.kept_classes(categories, settings.get("classes"))
    out = [[p for p in ps if p["score"] >= thr and (keep is None or p["category_id"] in keep)] for ps in out]
    for name, why in bad[:20]:
        log.warning("skipped predictions of %s: %s", name, why)
    if missing:
        log.warning(
            "%d sample(s) have no predictions (counted as images without objects), e.g. %s",
            len(missing),
            ", ".join(missing[:3]),
        )
    meta = {
        "source": where,
        "categories": categories,
        "score_threshold": thr,
        "missing": len(missing),
        "missing_examples": missing[:20],
        "unmatched_records": unmatched,
        "bad_files": bad[:200],
        "bad_file_count": len(bad),
    }
    return out, meta


# --------------------------------------------------------------------------- weak labels (export, datapool)

WEAK_LABELS_FORMAT = "kurate.weak_labels/1"


def weak_labels(
    predictions_path: str, selected: Sequence[str], scores: dict[str, float] | None = None
) -> dict[str, Any]:
    """The weak labels of the ``selected`` samples: their predictions, in Lightly's record layout.

    Export writes this to ``data/weak_labels.json``. It is also the hook for the datapool: with
    ``append_weak_labels`` the datapool stores each selected sample's ``predictions`` (and ``score``)
    with its entry, from this same structure.
    """
    meta = preds_io.read_meta(predictions_path)
    want = set(selected)
    found: dict[str, list[preds_io.Prediction]] = {}
    for name, ps in preds_io.iter_records(predictions_path):
        if name in want:
            found[name] = ps
    samples = []
    for name in sorted(want):
        rec: dict[str, Any] = {"file_name": name, "predictions": found.get(name, [])}
        if scores is not None and name in scores:
            rec["score"] = scores[name]
        samples.append(rec)
    return {
        "format": WEAK_LABELS_FORMAT,
        "task_type": preds_io.TASK_TYPE,
        "source": meta.get("source", ""),
        "categories": meta.get("categories", []),
        "samples": samples,
    }


def class_counts(predictions_path: str, selected: set[str]) -> list[dict[str, Any]]:
    """Objects (and images holding them) per class, in the input and in the selection, for the report."""
    meta = preds_io.read_meta(predictions_path)
    names = preds_io.category_names(list(meta.get("categories") or []))
    rows: dict[int, dict[str, int]] = {}
    for name, ps in preds_io.iter_records(predictions_path):
        chosen = name in selected
        seen: set[int] = set()
        for p in ps:
            cid = int(p["category_id"])
            r = rows.setdefault(cid, {"objects": 0, "images": 0, "selected_objects": 0, "selected_images": 0})
            r["objects"] += 1
            r["selected_objects"] += chosen
            if cid not in seen:
                seen.add(cid)
                r["images"] += 1
                r["selected_images"] += chosen
    return [{"id": cid, "name": preds_io.name_of(cid, names), **rows[cid]} for cid in sorted(rows)]


def run_source(
    files: filelist.FileList,
    settings: dict[str, Any],
    max_pixels: int,
    progress: bool = True,
    on_image: DebugWriter | None = None,
) -> tuple[list[list[preds_io.Prediction]], dict[str, Any]]:
    """Predictions of every sample of ``files`` from the configured source, and facts for the artifact.

    Model source: ``on_image`` (a :class:`DebugWriter`) gets each decoded image it wants with its boxes.
    """
    if settings["source"] == "predictions":
        return from_predictions(files, settings)
    from kurate.models import detection  # torch, only here

    return detection.predict_files(
        files, settings, max_pixels=max_pixels, progress=progress, on_image=on_image
    )
