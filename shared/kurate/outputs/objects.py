"""Object-level outputs (``object_level.*``): the crops, their link to images and boxes, the crop dataset.

With object-level selection the samples are crops (:mod:`kurate.media.crops`); the run's four file lists
stay a partition of the input *images* (an image is sampled when one of its crops is selected), and
this module writes what is about the crops:

- ``data/crops.csv``: every crop -- ``filename`` (Lightly's crop name), ``image``, ``box_index``,
  ``category_id``, ``category``, ``score``, ``x``, ``y``, ``width``, ``height`` (the predicted box,
  pixels), ``status`` (``sampled``, ``removed`` or ``corrupt``) and ``reason`` (why it could not be cut);
- ``filenames/sampled_crops.txt``, ``removed_crops.txt``, ``corrupt_crops.txt``: the crops' partition;
- ``crops/<crop_dataset_name>/<crop name>``: the selected crops as images -- Lightly's crop dataset
  (default name ``<input folder name>-crops``, as Lightly named it ``<dataset>-crops``), each in its
  image's format, the padded box cut from the upright image.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

from kurate.io import filelist, storage
from kurate.io.names import UnsafeNameError, inside
from kurate.media import crops, image
from kurate.outputs.inputs import RunInputs
from kurate.outputs.textfiles import write_lines, write_rows

log = logging.getLogger("kurate.outputs.objects")

CROPS_CSV = "crops.csv"
CROPS_DIR = "crops"
#: PIL's writer for a crop's file extension (a crop keeps its image's format; others become PNG).
_PIL_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".gif": "GIF",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".ppm": "PPM",
    ".pgm": "PPM",
}


def crop_list(inputs: RunInputs, padding: float) -> filelist.FileList:
    """The run's crops, as embed derived them (the same pure function of the same artifacts)."""
    return crops.crop_list(inputs.clean, inputs.predictions, padding)


def images_of(inputs: RunInputs, selected: Sequence[str]) -> list[str]:
    """The images (sorted) that hold at least one of the ``selected`` crops."""
    parent = crops.crop_images(inputs.predictions)
    return sorted({parent[c] for c in selected})


def write_outputs(
    inputs: RunInputs, run_dir: str, object_level: dict[str, Any], selected: Sequence[str]
) -> dict[str, Any]:
    """Write the crops' outputs (module doc) and return the report's ``objects`` section."""
    padding = float(object_level.get("padding", 0.0))
    files = crop_list(inputs, padding)
    failed = {str(n): str(r) for n, r in inputs.emb_meta.get("failed", [])}
    chosen = set(selected)
    status = ["sampled" if n in chosen else "corrupt" if n in failed else "removed" for n in files.names]
    rows = []
    for i, name in enumerate(files.names):
        x, y, w, h = crops.bbox_of(files, i)
        rows.append(
            [
                name,
                files.columns["image"][i],
                files.columns["box_index"][i],
                files.columns["category_id"][i],
                files.columns["category"][i],
                files.columns["score"][i],
                *(f"{v:g}" for v in (x, y, w, h)),
                status[i],
                failed.get(name, ""),
            ]
        )
    header = ["filename", "image", "box_index", "category_id", "category", "score"]
    header += ["x", "y", "width", "height", "status", "reason"]
    write_rows(storage.join(run_dir, "data", CROPS_CSV), header, rows)
    fdir = storage.join(run_dir, "filenames")
    for kind in ("sampled", "removed", "corrupt"):
        write_lines(
            storage.join(fdir, f"{kind}_crops.txt"),
            sorted(n for n, st in zip(files.names, status, strict=True) if st == kind),
        )
    name = str(object_level.get("crop_dataset_name") or "crops")
    dataset = storage.join(run_dir, CROPS_DIR, name)
    written, not_cut = write_crops(files, [i for i, st in enumerate(status) if st == "sampled"], dataset)
    info = dict(files.extra.get("object_level") or {})
    section = {
        "task_name": str(object_level.get("task_name", "")),
        "padding": padding,
        "images": info.get("images", len(inputs.clean)),
        "images_with_objects": info.get("images_with_objects", 0),
        "empty_boxes": info.get("empty_boxes", 0),
        "crops": len(files),
        "sampled": status.count("sampled"),
        "removed": status.count("removed"),
        "corrupt": status.count("corrupt"),
        "sampled_images": len(images_of(inputs, selected)),
        "crop_dataset": f"{CROPS_DIR}/{name}/",
        "crop_dataset_files": written,
        "crops_csv": f"data/{CROPS_CSV}",
    }
    if not_cut:
        section["not_written"] = not_cut[:20]
        log.warning("%d selected crop(s) could not be written, e.g. %s", len(not_cut), not_cut[:3])
    log.info(
        "object level: %d of %d crop(s) selected, written to %s", section["sampled"], len(files), dataset
    )
    return section


def write_crops(files: filelist.FileList, rows: Sequence[int], out_dir: str) -> tuple[int, list[str]]:
    """Cut crop ``rows`` of ``files`` and write each to ``out_dir/<crop name>``; (written, failed names)."""
    written = 0
    failed: list[str] = []
    for row, img, reason in crops.iter_crops(files, rows, image.DEFAULT_MAX_PIXELS):
        name = files.names[row]
        try:
            target = inside(out_dir, name)  # a crop's name comes from an input name: never outside out_dir
        except UnsafeNameError as exc:
            img, reason = None, exc.reason
        if img is None:
            log.warning("could not cut %s: %s", name, reason)
            failed.append(name)
            continue
        fmt = _PIL_FORMATS.get(crops.split_extension(name)[1].lower(), "PNG")
        buf = io.BytesIO()
        (img.convert("RGB") if fmt == "JPEG" else img).save(buf, format=fmt)
        storage.write_bytes(target, buf.getvalue())
        written += 1
    return written, sorted(failed)


def thumbnails(inputs: RunInputs, padding: float, names: set[str], size: int) -> dict[str, Any]:
    """Small images of the crops ``names`` (for the report's examples); a crop that cannot be cut: None."""
    files = crop_list(inputs, padding)
    rows = [i for i, n in enumerate(files.names) if n in names]
    out: dict[str, Any] = {}
    for row, img, _ in crops.iter_crops(files, rows, image.DEFAULT_MAX_PIXELS):
        if img is not None:
            img.thumbnail((size, size))
        out[files.names[row]] = img
    return out
