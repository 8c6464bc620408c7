r"""Object crops as samples (``object_level.*``): every predicted box of a sample becomes a sample.

**Names** are Lightly's (``lightly-crop``, the crop naming Lightly documented):
``<sample name without extension>/<box index>_<class name><sample extension>``. The second box of
``img/a.jpg``, a car, is ``img/a/1_car.jpg``; a box in the video frame ``clips/c-007-mp4.png`` gives
``clips/c-007-mp4/0_person.png``. The box index is the prediction's position in the sample's list of
predictions; a class without a name is ``class<id>`` (as ``lightly-crop``); ``/``, ``\`` and control
characters in a class name become ``_`` (a name is a path inside the outputs).

**The crop of a box** is Lightly's: width and height grow by the factor ``1 + padding`` about the
box's centre (``object_level.padding``, relative to the box size: 0.1 = 10 % wider and higher), the
padded box is clipped to the image and its corners truncated to whole pixels. A box of zero width or
height has no crop (counted as ``empty_boxes``); one that lies outside its image is a crop that
cannot be cut (reported like a sample that cannot be decoded).

**The crop list** is a file list of the crops, in the order of the clean list and, within a sample, of
its predictions. Its columns link each crop to its image and box -- ``image`` (the sample it is cut
from), ``box_index``, ``category_id``, ``category``, ``score``, ``bbox`` (the prediction's
``x y w h`` in pixels) -- and carry what decoding needs: the image's ``video``/``frame``/``time_s``
and a ``sha256`` made from the image's content hash and the box (the embedding cache's key). It is
a pure function of the clean list, the predictions artifact and the padding: every phase that needs
it derives the same list.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

from kurate.io import filelist
from kurate.io import predictions as preds_io

#: ``object_level.task_name`` of the run's own pretagging predictions (Lightly's name).
PRETAGGING_TASK = "lightly_pretagging"
#: The file-list columns that tie a crop to its image and box.
LINK_COLUMNS = ("image", "box_index", "category_id", "category", "score", "bbox")
#: The image's columns a crop keeps (decoding a video frame needs them).
PARENT_COLUMNS = ("video", "frame", "time_s")
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")


def class_label(category_id: int, names: dict[int, str]) -> str:
    """The class part of a crop name: the category's name (made path-safe), else ``class<id>``."""
    name = names.get(int(category_id), "")
    return _UNSAFE.sub("_", name) if name else f"class{int(category_id)}"


def split_extension(name: str) -> tuple[str, str]:
    """``("dir/a", ".jpg")`` for ``dir/a.jpg``; no extension: ``(name, "")``."""
    base = name.rsplit("/", 1)[-1]
    if "." not in base.lstrip("."):
        return name, ""
    cut = name.rfind(".")
    return name[:cut], name[cut:]


def crop_name(image: str, box_index: int, label: str) -> str:
    """The crop's sample name: ``<image without extension>/<box index>_<label><image extension>``."""
    stem, ext = split_extension(image)
    return f"{stem}/{int(box_index)}_{label}{ext}"


def crop_box(
    bbox: Sequence[float], padding: float, width: int, height: int
) -> tuple[int, int, int, int] | None:
    """The pixel box ``(x0, y0, x1, y1)`` cut for a prediction ``[x, y, w, h]`` (None: nothing left).

    Lightly's rule: ``w`` and ``h`` times ``1 + padding`` about the centre, clipped to the image,
    corners truncated to whole pixels.
    """
    x, y, w, h = (float(v) for v in bbox)
    cx, cy = x + w / 2, y + h / 2
    pw, ph = w * (1 + padding), h * (1 + padding)

    def clip(v: float, hi: int) -> int:
        return int(min(max(v, 0.0), float(hi)))

    x0, x1 = clip(cx - pw / 2, width), clip(cx + pw / 2, width)
    y0, y1 = clip(cy - ph / 2, height), clip(cy + ph / 2, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def crop_sha256(image_sha256: str, bbox: Sequence[float], padding: float) -> str:
    """A content key for the crop: the image's hash and the box ("" when the image has none)."""
    if not image_sha256:
        return ""
    box = ",".join(repr(float(v)) for v in bbox)
    return hashlib.sha256(f"{image_sha256}|crop|{box}|{float(padding)!r}".encode()).hexdigest()


def iter_objects(predictions_path: str) -> Iterator[tuple[str, int, preds_io.Prediction]]:
    """``(image, box_index, prediction)`` for every prediction of the artifact, in its order."""
    for name, ps in preds_io.iter_records(predictions_path):
        for i, p in enumerate(ps):
            yield name, i, p


def crop_list(clean: filelist.FileList, predictions_path: str, padding: float) -> filelist.FileList:
    """The crops of the samples of ``clean`` (see the module doc), with counts in ``extra``."""
    meta = preds_io.read_meta(predictions_path)
    names = preds_io.category_names(list(meta.get("categories") or []))
    row_of = {n: i for i, n in enumerate(clean.names)}
    parent_cols = [c for c in PARENT_COLUMNS if c in clean.columns]
    hashes = clean.columns.get("sha256")
    out_names: list[str] = []
    cols: dict[str, list[str]] = {c: [] for c in (*LINK_COLUMNS, *parent_cols, "sha256")}
    empty = 0
    with_objects: set[str] = set()
    for image, index, p in iter_objects(predictions_path):
        row = row_of.get(image)
        if row is None:  # predictions of a sample that is not in the list (never from pretag)
            continue
        x, y, w, h = p["bbox"]
        if w <= 0 or h <= 0:
            empty += 1
            continue
        with_objects.add(image)
        cid = int(p["category_id"])
        label = class_label(cid, names)
        out_names.append(crop_name(image, index, label))
        cols["image"].append(image)
        cols["box_index"].append(str(index))
        cols["category_id"].append(str(cid))
        cols["category"].append(names.get(cid, f"class{cid}"))
        cols["score"].append(repr(float(p["score"])))
        cols["bbox"].append(" ".join(repr(float(v)) for v in (x, y, w, h)))
        for c in parent_cols:
            cols[c].append(clean.columns[c][row])
        cols["sha256"].append(crop_sha256(hashes[row] if hashes else "", p["bbox"], padding))
    extra = {
        "object_level": {
            "padding": float(padding),
            "images": len(clean),
            "images_with_objects": len(with_objects),
            "crops": len(out_names),
            "empty_boxes": empty,
            "source": str(meta.get("source", "")),
        }
    }
    return filelist.FileList(root=clean.root, names=out_names, columns=cols, extra=extra)


def bbox_of(files: filelist.FileList, row: int) -> list[float]:
    """The prediction box ``[x, y, w, h]`` of crop ``row``."""
    return [float(v) for v in files.columns["bbox"][row].split()]


def is_crop_list(files: filelist.FileList) -> bool:
    """Whether ``files`` lists crops (it has the link columns)."""
    return "image" in files.columns and "bbox" in files.columns


def parents(files: filelist.FileList) -> tuple[filelist.FileList, list[int]]:
    """The images the crops of ``files`` are cut from (first-seen order), and each crop's image row."""
    row_of: dict[str, int] = {}
    parent_rows: list[int] = []
    cols = [c for c in PARENT_COLUMNS if c in files.columns]
    names: list[str] = []
    pcols: dict[str, list[str]] = {c: [] for c in cols}
    for r, image in enumerate(files.columns["image"]):
        p = row_of.get(image)
        if p is None:
            p = row_of[image] = len(names)
            names.append(image)
            for c in cols:
                pcols[c].append(files.columns[c][r])
        parent_rows.append(p)
    return filelist.FileList(root=files.root, names=names, columns=pcols), parent_rows


def padding_of(files: filelist.FileList) -> float:
    """The padding a crop list was made with."""
    return float((files.extra.get("object_level") or {}).get("padding", 0.0))


def crop_images(predictions_path: str) -> dict[str, str]:
    """Crop name -> the sample it is cut from, for every crop of the predictions artifact."""
    names = preds_io.category_names(list(preds_io.read_meta(predictions_path).get("categories") or []))
    out: dict[str, str] = {}
    for image, index, p in iter_objects(predictions_path):
        if p["bbox"][2] > 0 and p["bbox"][3] > 0:
            out[crop_name(image, index, class_label(int(p["category_id"]), names))] = image
    return out


def iter_crops(
    files: filelist.FileList, rows: Sequence[int], max_pixels: int, padding: float | None = None
) -> Iterator[tuple[int, Any, str]]:
    """``(row, RGB PIL crop or None, reason)`` for crop ``rows`` of ``files``: each image decoded once.

    ``padding``: the list's own (:func:`padding_of`) unless given.
    """
    from kurate.media.samples import iter_samples

    pad = padding_of(files) if padding is None else float(padding)
    images, parent_rows = parents(files)
    wanted: dict[int, list[int]] = {}
    for r in rows:
        wanted.setdefault(parent_rows[r], []).append(r)
    for prow, img, reason in iter_samples(images, sorted(wanted), max_pixels):
        for r in wanted[prow]:
            if img is None:
                yield r, None, reason
                continue
            box = crop_box(bbox_of(files, r), pad, img.width, img.height)
            if box is None:
                yield r, None, "the box lies outside its image"
            else:
                yield r, img.crop(box), ""
