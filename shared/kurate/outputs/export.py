"""Export: write a run's outputs in Lightly's layout (plus what helps), every file atomically.

``report.json`` is written last: its presence marks the run directory as complete, so a run killed
mid-export leaves an incomplete directory that the next run with the same ``run_directory`` resumes.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from kurate import __version__
from kurate.errors import CorruptFileError, KurateError
from kurate.io import embeddings_io, filelist, storage
from kurate.io.names import inside
from kurate.media import formats, image
from kurate.media import metadata as computed_metadata
from kurate.outputs import objects
from kurate.outputs import report as run_report
from kurate.outputs.inputs import RunInputs
from kurate.outputs.textfiles import write_lines as _write_lines
from kurate.outputs.textfiles import write_rows as _write_rows
from kurate.selection.coreset import normalize

log = logging.getLogger("kurate.outputs.export")

REPORT_JSON = "report.json"
#: The computed lightly.* metadata of the clean samples, under data/.
METADATA_CSV = "metadata.csv"
FORMAT_EXT = {"jpeg": "jpg", "tif": "tiff"}
PIL_FORMAT = {
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "png": "PNG",
    "bmp": "BMP",
    "webp": "WEBP",
    "tif": "TIFF",
    "tiff": "TIFF",
    "ppm": "PPM",
}


def is_complete(run_dir: str) -> bool:
    """True if ``run_dir`` holds a finished run (its report.json exists)."""
    return storage.exists(storage.join(run_dir, REPORT_JSON))


def _write_csv(uri: str, names: Sequence[str], x: np.ndarray) -> None:
    with storage.atomic_writer(uri, "w", encoding="utf-8") as fh:
        embeddings_io.write_lightly_csv(fh, list(names), x, embeddings_io.labels_for(names))


def _resize(img: Any, size: Any) -> Any:
    from PIL import Image

    if size == -1 or size is None:
        return img
    if isinstance(size, int):
        w, h = img.size
        scale = size / min(w, h)
        new = (max(1, round(w * scale)), max(1, round(h * scale)))
    else:
        new = (int(size[1]), int(size[0]))  # size is [h, w]; PIL wants (w, h)
    return img.resize(new, Image.Resampling.BICUBIC)


def dumped_name(name: str, fmt: str) -> str:
    """Where a dumped sample goes under data/sampled/: same relative path, extension of ``fmt``."""
    ext = FORMAT_EXT.get(fmt, fmt)
    if formats.extension(name) in (fmt, ext) or FORMAT_EXT.get(formats.extension(name)) == ext:
        return name
    stem = name.rsplit(".", 1)[0] if "." in name.rsplit("/", 1)[-1] else name
    return f"{stem}.{ext}"


def dump_targets(names: Sequence[str], fmt: str) -> dict[str, str]:
    """Where each selected sample is dumped: distinct names by construction, whatever the names are.

    A name already in ``fmt`` keeps its name; the others get their name with ``fmt``'s extension
    (Lightly's layout: ``a.jpg`` → ``a.png``) unless that is taken (by ``a.png`` itself, or by another
    converted name), then ``a.jpg.png``, then ``a.jpg-2.png``, ... Decided in sorted order, so the
    same names always give the same targets; each target stays in its sample's folder.
    """
    fmt = fmt.lower()
    ext = FORMAT_EXT.get(fmt, fmt)
    wanted = {n: dumped_name(n, fmt) for n in names}
    out = {n: n for n in names if wanted[n] == n}
    used = set(out.values())
    for n in sorted(set(names) - set(out)):
        candidates = [wanted[n], f"{n}.{ext}"]
        k = 2
        while candidates[-1] in used:
            candidates.append(f"{n}-{k}.{ext}")
            k += 1
        target = next(c for c in candidates if c not in used)
        out[n] = target
        used.add(target)
    return out


def dump_samples(
    root: str,
    names: Sequence[str],
    out_dir: str,
    size: Any,
    fmt: str,
    workers: int = 8,
    frames: dict[str, tuple[str, int]] | None = None,
) -> list[str]:
    """Copy (or re-encode/resize) the selected samples into ``out_dir``; returns names that failed.

    ``frames`` maps video-frame sample names to (video file, frame number): those are decoded from
    their video (one pass per video, up to its last selected frame) and written as images.
    """
    fmt = fmt.lower()
    frames = frames or {}
    where = dump_targets(names, fmt)
    targets = [where[n] for n in names]

    def save(img: Any, target: str) -> None:
        buf = io.BytesIO()
        _resize(img, size).save(buf, format=PIL_FORMAT[fmt])
        storage.write_bytes(inside(out_dir, target), buf.getvalue())  # never outside out_dir

    def one(pair: tuple[str, str]) -> str | None:
        name, target = pair
        try:
            src = filelist.sample_uri(root, name)
            if (size == -1 or size is None) and target == name:
                storage.write_bytes(inside(out_dir, target), storage.read_bytes(src))
                return None
            save(image.load_image(src, name), target)
        except (CorruptFileError, FileNotFoundError) as exc:  # an unsafe name is a CorruptFileError too
            log.warning("could not dump %s: %s", name, exc)
            return name
        return None

    def one_video(item: tuple[str, dict[int, tuple[str, str]]]) -> list[str]:
        from PIL import Image

        from kurate.media import video

        vid, wanted = item
        failed: list[str] = []
        try:
            for index, rgb, reason in video.iter_selected_rgb(filelist.sample_uri(root, vid), set(wanted)):
                name, target = wanted[index]
                if rgb is None:
                    log.warning("could not dump %s: %s", name, reason)
                    failed.append(name)
                else:
                    save(Image.fromarray(rgb, "RGB"), target)
        except CorruptFileError as exc:
            log.warning("could not dump the frames of %s: %s", vid, exc.reason)
            return [n for n, _ in wanted.values()]
        return failed

    by_video: dict[str, dict[int, tuple[str, str]]] = {}
    plain: list[tuple[str, str]] = []
    for name, target in zip(names, targets, strict=True):
        if name in frames:
            vid, index = frames[name]
            by_video.setdefault(vid, {})[index] = (name, target)
        else:
            plain.append((name, target))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        failed = [n for n in pool.map(one, plain) if n is not None]
        failed += [n for batch in pool.map(one_video, sorted(by_video.items())) for n in batch]
    return failed


def export_run(run_dir: str, inputs: RunInputs, config: dict[str, Any]) -> dict[str, Any]:
    """Write every output of the run to ``run_dir`` (the report last) and return the report data."""
    t0 = time.time()
    if is_complete(run_dir):
        raise KurateError(f"{run_dir} already holds a complete run; choose another run_directory")
    storage.makedirs(run_dir)

    # The four lists partition the input: corrupt (check + embed failures), duplicate, removed, sampled.
    embed_failed = [(str(n), str(r)) for n, r in inputs.emb_meta.get("failed", [])]
    ol = config.get("object_level") or {}
    selected = sorted(inputs.selection.names)  # the selected samples: images, or object-level crops
    sampled = selected
    if ol:  # the samples are crops: the lists are of the images holding a selected one
        embed_failed = []  # a crop that could not be cut is a crop's failure (objects.py), not an image's
        sampled = objects.images_of(inputs, selected)
    corrupt_rows = list(zip(inputs.corrupt.names, inputs.corrupt.columns.get("reason", []), strict=True))
    corrupt_rows += embed_failed
    corrupt_names = sorted(n for n, _ in corrupt_rows)
    duplicate_names = sorted(inputs.duplicates.names)
    sampled_set = set(sampled)
    failed_set = {n for n, _ in embed_failed}
    removed = sorted(n for n in inputs.clean.names if n not in sampled_set and n not in failed_set)
    seen_names = sorted(inputs.seen.names) if inputs.seen is not None else []
    total = len(corrupt_names) + len(duplicate_names) + len(removed) + len(sampled) + len(seen_names)
    if total != len(inputs.files) or set(inputs.files.names) != (
        set(corrupt_names) | set(duplicate_names) | set(removed) | sampled_set | set(seen_names)
    ):
        raise KurateError("internal error: the output file lists do not partition the input")

    fdir = storage.join(run_dir, "filenames")
    _write_lines(storage.join(fdir, "corrupt_filenames.txt"), corrupt_names)
    _write_lines(storage.join(fdir, "duplicate_filenames.txt"), duplicate_names)
    _write_lines(storage.join(fdir, "removed_filenames.txt"), removed)
    _write_lines(storage.join(fdir, "sampled_filenames.txt"), sampled)
    if inputs.seen is not None:
        _write_lines(storage.join(fdir, "seen_filenames.txt"), seen_names)
    _write_rows(storage.join(fdir, "corrupt_reasons.csv"), ["filename", "reason"], sorted(corrupt_rows))
    _write_rows(
        storage.join(fdir, "duplicate_of.csv"),
        ["filename", "duplicate_of"],
        sorted(zip(inputs.duplicates.names, inputs.duplicates.column("duplicate_of"), strict=True)),
    )

    ddir = storage.join(run_dir, "data")
    x = np.asarray(inputs.embeddings, dtype=np.float32)
    _write_csv(storage.join(ddir, "embeddings.csv"), inputs.emb_names, x)
    xn = normalize(x)
    _write_csv(storage.join(ddir, "normalized_embeddings.csv"), inputs.emb_names, xn)
    if config.get("dump_sampled_embeddings", True):
        pos = {n: i for i, n in enumerate(inputs.emb_names)}
        rows = np.array([pos[n] for n in selected], dtype=np.int64)
        sel = (xn if inputs.selection.extra.get("normalized", True) else x)[rows] if len(rows) else xn[:0]
        _write_csv(storage.join(ddir, "selected_embeddings.csv"), selected, sel)
    objects_report = objects.write_outputs(inputs, run_dir, ol, selected) if ol else {}

    metadata_report = _computed_metadata(inputs, ddir)

    frames = _frame_locations(inputs.files)
    dump_failed: list[str] = []
    notes: list[str] = []
    if _upload_without_datapool(config):
        # Lightly uploaded the selection to its platform; here it goes where dump_dataset puts it.
        note = (
            "upload_dataset=True without a datapool to upload to: the selected samples are copied to "
            f"{storage.join(ddir, 'sampled')} (as dump_dataset does)"
        )
        log.warning(note)
        notes.append(note)
    if config.get("dump_dataset", False) or _upload_without_datapool(config):
        fmt = str(config.get("output_image_format", "png")).lower()
        for name, target in sorted(dump_targets(sampled, fmt).items()):
            if target != dumped_name(name, fmt):  # its plain name is another selected sample's
                note = f"dumped {name} as data/sampled/{target} ({dumped_name(name, fmt)} is another sample)"
                log.warning(note)
                notes.append(note)
        dump_failed = dump_samples(
            inputs.files.root,
            sampled,
            storage.join(ddir, "sampled"),
            config.get("output_image_size", -1),
            str(config.get("output_image_format", "png")),
            frames=frames,
        )
    videos_report = _videos_report(
        inputs, ddir, config, sampled_set, set(corrupt_names), set(duplicate_names)
    )

    weak_labels = _weak_labels(inputs, config, sampled)  # written with the outputs and into the datapool
    pretag_report = _pretagging_outputs(inputs, run_dir, sampled, weak_labels)

    if config.get("config_yaml"):
        storage.write_text(storage.join(run_dir, "config", "config.yaml"), str(config["config_yaml"]))
    # The datapool is committed before report.json: if another run committed first, this run stops
    # here, incomplete, and its rerun (same run_directory) selects against the new state.
    pool_report = update_datapool(inputs, config, sampled, frames, len(seen_names), weak_labels)

    sel_extra = inputs.selection.extra
    report: dict[str, Any] = {
        "kurate_version": __version__,
        "input": inputs.files.root,
        "run_directory": run_dir,
        "counts": {
            "available": len(inputs.files),
            "corrupt": len(corrupt_names),
            "duplicate": len(duplicate_names),
            "embedded": len(inputs.emb_names),
            "selected": len(sampled),
            "removed": len(removed),
            **({"seen": len(seen_names)} if inputs.seen is not None else {}),
        },
        "ignored": {
            "other_extensions": inputs.files.extra.get("ignored_other_extensions", 0),
            "names_with_newline": inputs.files.extra.get("skipped_names", []),
            "relevant_filenames_missing": inputs.files.extra.get("relevant_missing_count", 0),
            # odd entries of the input, skipped: a name that is not UTF-8, a FIFO, a symlink loop, ...
            "entries": [{"name": n, "reason": r} for n, r in inputs.files.extra.get("skipped_entries", [])],
        },
        "selection": {
            "method": sel_extra.get("method"),
            "requested": sel_extra.get("requested"),
            "min_distance": sel_extra.get("min_distance"),
            "selected": len(selected),  # object_level: crops (counts.selected: the images holding them)
            "stop_reason": sel_extra.get("stop_reason"),
            "device": sel_extra.get("device", "cpu"),
            "normalized_embeddings": sel_extra.get("normalized"),
            "scorer": sel_extra.get("scorer")
            or {"active": False, "reason": "the selection did not record a scorer"},
            # Lightly's embeddings-file columns: masked rows take no part, selected ones are kept
            **{k: sel_extra[k] for k in ("masked", "preselected", "requirements") if k in sel_extra},
            **({"strategies": sel_extra["strategies"]} if sel_extra.get("strategies") else {}),
        },
        **({"metadata": metadata_report} if metadata_report else {}),
        "pretagging": pretag_report,
        "embedding": {k: v for k, v in inputs.emb_meta.items() if k not in ("failed", "root")},
        **({"videos": videos_report} if videos_report else {}),
        **({"datapool": pool_report} if pool_report else {}),
        **({"objects": objects_report} if objects_report else {}),
        "warnings": list(sel_extra.get("warnings", []))
        + notes
        + [f"could not dump {n}" for n in dump_failed],
        "phase_durations_s": {k: v.get("duration_s") for k, v in inputs.phases.items()},
        "worker_id": config.get("worker_id", ""),
    }
    report["phase_durations_s"]["export"] = round(time.time() - t0, 3)
    lists = run_report.Lists(sorted(corrupt_rows), duplicate_names, removed, sampled)
    report.update(run_report.build(run_dir, inputs, config, report, lists))
    storage.write_text(storage.join(run_dir, REPORT_JSON), json.dumps(report, indent=2, default=str))
    if pool_report.get("updated"):  # keep_history=False: the replaced state goes once the run is complete
        from kurate.pool import datapool

        datapool.drop_superseded(str(pool_report["location"]), int(pool_report["version"]))
    log.info("wrote outputs to %s", run_dir)
    return report


def _upload_without_datapool(config: dict[str, Any]) -> bool:
    """``upload_dataset`` with no datapool that takes the samples (none, or left untouched)."""
    if not config.get("upload_dataset"):
        return False
    dp = config.get("datapool") or {}
    return not dp.get("location") or not dp.get("enable_update", True)


def update_datapool(
    inputs: RunInputs,
    config: dict[str, Any],
    sampled: Sequence[str],
    frames: dict[str, tuple[str, int]],
    seen: int,
    weak_labels: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Add this run's picks to the datapool (one atomic commit) and copy them there (upload_dataset).

    ``weak_labels`` (append_weak_labels) are stored with the new entries.

    Returns the report's ``datapool`` section ({} without a datapool).
    """
    from kurate.pool import datapool

    dp = config.get("datapool") or {}
    loc = str(dp.get("location") or "")
    if not loc:
        return {}
    base = int(dp.get("version", 0))
    section: dict[str, Any] = {
        "location": loc,
        "base_version": base,
        "version": base,
        "already_in_datapool": seen,
        "added": 0,
        "updated": False,
    }
    if not dp.get("enable_update", True):
        section["note"] = "datasource.enable_datapool_update=False: the datapool was left untouched"
        return section
    if not inputs.emb_names:
        return section
    pos = {n: i for i, n in enumerate(inputs.emb_names)}
    rows = np.array([pos[n] for n in sampled], dtype=np.int64)
    sha = dict(
        zip(inputs.clean.names, inputs.clean.columns.get("sha256") or [""] * len(inputs.clean), strict=True)
    )
    committed = int(dp.get("committed_version") or 0)
    head = datapool.read_head(loc, committed) if committed else None
    if head is not None:  # killed after its commit: finish what follows it, commit nothing twice
        result = datapool.roll_forward(
            loc, head, checkpoint=str(dp.get("checkpoint") or ""), trained=bool(dp.get("trained"))
        )
    else:
        result = datapool.commit(
            loc,
            base,
            list(sampled),
            np.asarray(inputs.embeddings, dtype=np.float32)[rows],
            [sha.get(n, "") for n in sampled],
            datapool.model_description(inputs.emb_meta),
            processed=[(n, sha.get(n, "")) for n in inputs.emb_names if sha.get(n)],
            run_id=str(dp.get("run_id") or "run"),
            run_token=str(dp.get("run_token") or ""),
            keep_history=bool(dp.get("keep_history", True)),
            checkpoint=str(dp.get("checkpoint") or ""),
            trained=bool(dp.get("trained")),
            weak_labels=weak_labels,
        )
    section.update(
        version=result.version,
        entries=result.entries,
        added=result.added,
        replaced=result.replaced,
        updated=True,
        state=result.state,
    )
    if dp.get("upload_dataset") and sampled:
        failed = dump_samples(
            inputs.files.root,
            sampled,
            storage.join(loc, datapool.SAMPLES_DIR),
            config.get("output_image_size", -1),
            str(config.get("output_image_format", "png")),
            frames=frames,
        )
        section["uploaded"] = len(sampled) - len(failed)
        section["upload_failed"] = failed
    return section


def _pretagging_outputs(
    inputs: RunInputs, run_dir: str, sampled: list[str], weak_labels: dict[str, Any] | None
) -> dict[str, Any]:
    """Write pretagging's outputs and return the report's section (objects per class, input vs selection).

    ``pretagging/predictions.jsonl`` + ``schema.json`` (Lightly's record and schema layout),
    ``pretagging/debug/`` (pretagging_debug), ``data/weak_labels.json`` (append_weak_labels).
    """
    from kurate.io import predictions as preds_io
    from kurate.models import pretag

    meta = preds_io.read_meta(inputs.predictions)
    if not meta.get("active"):
        return {"active": False, "reason": meta.get("reason", "no predictions")}
    src = inputs.predictions
    pdir = storage.join(run_dir, "pretagging")
    storage.write_bytes(
        storage.join(pdir, "predictions.jsonl"), storage.read_bytes(storage.join(src, preds_io.LINES))
    )
    schema = {"task_type": preds_io.TASK_TYPE, "categories": meta.get("categories", [])}
    storage.write_text(storage.join(pdir, "schema.json"), json.dumps(schema, indent=1))
    debug_src = preds_io.debug_dir(src)
    debug_files = sorted(storage.list_files(debug_src)) if storage.exists(debug_src) else []
    for rel in debug_files:
        storage.write_bytes(
            inside(storage.join(pdir, "debug"), rel), storage.read_bytes(inside(debug_src, rel))
        )
    counts = pretag.class_counts(src, set(sampled))
    boxes_json = _lightly_bounding_boxes(src, storage.join(run_dir, "data", "bounding_boxes.json"))
    section: dict[str, Any] = {
        "active": True,
        "source": meta.get("source", ""),
        "categories": meta.get("categories", []),
        "score_threshold": meta.get("score_threshold"),
        "samples": meta.get("count", 0),
        "objects": meta.get("objects", 0),
        "samples_with_objects": meta.get("samples_with_objects", 0),
        "missing": meta.get("missing", 0),
        "bad_files": meta.get("bad_file_count", 0),
        "failed": len(meta.get("failed", [])),
        "device": meta.get("device"),
        "classes": counts,
        "predictions": "pretagging/predictions.jsonl",
        "debug_images": "pretagging/debug/" if debug_files else None,
        "debug_image_count": len(debug_files),
        "weak_labels": None,
        "bounding_boxes": "data/bounding_boxes.json" if boxes_json else None,
    }
    if weak_labels is not None:
        storage.write_text(
            storage.join(run_dir, "data", "weak_labels.json"), json.dumps(weak_labels, indent=1)
        )
        section["weak_labels"] = "data/weak_labels.json"
    return section


def _lightly_bounding_boxes(predictions: str, uri: str) -> bool:
    """Lightly's pretagging output, ``data/bounding_boxes.json``, when the detector ran here.

    One entry per sample: ``{"filename", "boxes": [[x1, y1, x2, y2], ...] (relative to the image's
    width and height), "labels": [class names], "scores": [...]}``. Needs each image's size, which only
    a detector run records: with predictions from a file it is not written (Lightly wrote it only for
    its own model).
    """
    from kurate.io import predictions as preds_io

    names = preds_io.category_names(list(preds_io.read_meta(predictions).get("categories") or []))
    entries = []
    for name, ps, size in preds_io.iter_sized_records(predictions):
        if size is None:  # not decoded (predictions from a file, or an image the detector could not read)
            continue
        w, h = size
        entries.append(
            {
                "filename": name,
                "boxes": [
                    [
                        round(p["bbox"][0] / w, 6),
                        round(p["bbox"][1] / h, 6),
                        round((p["bbox"][0] + p["bbox"][2]) / w, 6),
                        round((p["bbox"][1] + p["bbox"][3]) / h, 6),
                    ]
                    for p in ps
                ],
                "labels": [preds_io.name_of(int(p["category_id"]), names) for p in ps],
                "scores": [p["score"] for p in ps],
            }
        )
    if not entries:
        return False
    storage.write_text(uri, json.dumps(entries, indent=1))
    return True


def _weak_labels(inputs: RunInputs, config: dict[str, Any], sampled: Sequence[str]) -> dict[str, Any] | None:
    """The selected samples' predictions and scores (append_weak_labels, active predictions), else None."""
    from kurate.io import predictions as preds_io
    from kurate.models import pretag

    if not config.get("append_weak_labels", False) or not inputs.predictions:
        return None
    if not preds_io.read_meta(inputs.predictions).get("active"):
        return None
    sc = inputs.selection.columns.get("score")
    scores = {n: float(v) for n, v in zip(inputs.selection.names, sc, strict=True)} if sc else None
    return pretag.weak_labels(inputs.predictions, sampled, scores)


def _computed_metadata(inputs: RunInputs, ddir: str) -> dict[str, Any] | None:
    """``data/metadata.csv``: the check's computed ``lightly.*`` metadata of every clean sample.

    Returns the report's summary (per key: count, min, median, mean, max), or None when the check
    decoded nothing (``enable_corruptness_check=False``).
    """
    cols = inputs.clean.columns
    keys = [k for k in computed_metadata.KEYS if k in cols]
    if not keys:
        return None
    names = list(inputs.clean.names)
    order = sorted(range(len(names)), key=names.__getitem__)
    _write_rows(
        storage.join(ddir, METADATA_CSV),
        ["filename", *keys],
        ([names[i], *(cols[k][i] for k in keys)] for i in order),
    )
    summary: dict[str, Any] = {}
    for k in keys:
        v = np.array([float(s) for s in cols[k] if s not in ("", "nan")], dtype=np.float64)
        if v.size:
            summary[k] = {
                "count": int(v.size),
                "min": float(v.min()),
                "median": float(np.median(v)),
                "mean": float(v.mean()),
                "max": float(v.max()),
            }
    return {"file": f"data/{METADATA_CSV}", "samples": len(names), "summary": summary}


def _frame_locations(files: filelist.FileList) -> dict[str, tuple[str, int]]:
    """Video-frame sample name -> (video file, frame number), from the ingest list's columns."""
    if "video" not in files.columns:
        return {}
    return {
        n: (v, int(f))
        for n, v, f in zip(files.names, files.column("video"), files.column("frame"), strict=True)
        if v and f
    }


def _videos_report(
    inputs: RunInputs,
    ddir: str,
    config: dict[str, Any],
    sampled: set[str],
    corrupt: set[str],
    duplicate: set[str],
) -> dict[str, Any]:
    """The report's video section; writes ``data/video_timeline.json`` (show_video_sampling_timeline)."""
    files = inputs.files
    infos: dict[str, dict[str, Any]] = files.extra.get("videos") or {}
    if not infos:
        return {}
    from kurate.media import video

    mismatches = list(files.extra.get("frame_count_mismatches") or [])
    mismatches += list(inputs.clean.extra.get("decoded_frame_count_mismatches") or [])
    video_col = files.column("video")
    section: dict[str, Any] = {
        "videos": len(infos),
        "frames": sum(1 for v, f in zip(video_col, files.column("frame"), strict=True) if v and f),
        "unreadable_videos": sorted(n for n, i in infos.items() if i.get("error") or not i.get("count")),
        "images": int(files.extra.get("image_count", 0)),
        "use_frame_count_metadata": bool(files.extra.get("use_frame_count_metadata", False)),
        "frame_count_mismatches": mismatches,
        "sequence_length": inputs.selection.extra.get("sequence_length", 1),
        "timeline": None,
    }
    if config.get("show_video_sampling_timeline", True):
        status = {}
        for n in files.names:
            status[n] = (
                "sampled" if n in sampled else "corrupt" if n in corrupt else "duplicate" if n in duplicate
                else "removed"
            )  # fmt: skip
        data = video.sampling_timeline(
            video_col, files.column("frame"), files.column("time_s"), files.names, status, infos
        )
        storage.write_text(storage.join(ddir, "video_timeline.json"), json.dumps(data, indent=1))
        section["timeline"] = "data/video_timeline.json"
    return section
