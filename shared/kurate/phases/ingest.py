"""Ingest phase: list the input samples (recursive, by extension, sorted, relative names).

Never cached: a grown folder is always seen. ``relevant_filenames_file`` restricts the list (it
names files: a video there brings all its frames); entries that escape the input folder are an error.
Videos are expanded into one sample per frame (Lightly's frame names, see :mod:`kurate.media.video`),
right after their file in sorted order; a video that cannot be opened stays one sample, its file.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kurate.errors import ConfigError, KurateError, describe
from kurate.io import filelist, storage
from kurate.io.names import unsafe_reason
from kurate.io.timing import timed
from kurate.media import formats, video
from kurate.phases import _entry

log = logging.getLogger("kurate.ingest")


_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def _relevant_name(line: str) -> str:
    """One entry of ``relevant_filenames_file``, exactly as written (see :func:`read_relevant_filenames`)."""
    name = line
    while name.startswith("./"):
        name = name[2:]
    if name.startswith("/") or _DRIVE.match(name):
        raise ConfigError(
            "relevant_filenames_file", f"entry {line!r} is an absolute path; entries are relative"
        )
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../"):
        raise ConfigError("relevant_filenames_file", f"entry {line!r} escapes the input directory")
    return name


def read_relevant_filenames(uri: str) -> set[str]:
    """The names listed in a relevant-filenames file.

    Format: UTF-8 text, one name per line exactly as kurate lists it (relative to ``input_dir``, '/'
    between folders). Only the line ending (LF or CRLF) and a leading ``./`` are not part of the
    name; spaces and backslashes are (a name may start or end with a space). Empty lines are
    skipped. An absolute entry, or one that climbs out of the input, is an error.
    """
    try:
        text = storage.read_text(uri)
    except FileNotFoundError:
        raise ConfigError("relevant_filenames_file", f"{uri} does not exist") from None
    except OSError as exc:  # a folder, unreadable, not a regular file
        raise ConfigError("relevant_filenames_file", f"cannot read it ({describe(exc)[0]})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "relevant_filenames_file", f"{uri} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    lines = (line[:-1] if line.endswith("\r") else line for line in text.split("\n"))
    return {_relevant_name(line) for line in lines if line}


#: Why a listed name is skipped: it holds a line break (the lists are one name per line).
LINE_BREAK = "the name contains a line break"


def list_input(
    input_dir: str, relevant_filenames_file: str = "", use_frame_count_metadata: bool = False
) -> filelist.FileList:
    """List image and video-frame samples under ``input_dir`` as a :class:`FileList` (counts in ``extra``).

    Files are in sorted order; each video's frames follow in frame order (columns ``video``,
    ``frame``, ``time_s``, present only when there are videos).
    """
    names: list[str] = []
    other = 0
    skipped: list[str] = []
    odd: dict[str, str] = {}  # entries that cannot be samples: shown name -> why

    def is_media(name: str) -> bool:
        ext = formats.extension(name)
        return ext in formats.IMAGE_EXTENSIONS or ext in formats.VIDEO_EXTENSIONS

    def on_skip(name: str, reason: str) -> None:
        if name.endswith("/") or is_media(name):  # a folder may hold samples; a media name was one
            odd[name] = reason
        else:
            nonlocal other
            other += 1

    for name in storage.list_files(input_dir, on_skip=on_skip):
        if is_media(name):
            if "\n" in name or "\r" in name:
                skipped.append(name)
                odd[storage.printable_name(name)] = LINE_BREAK
                continue
            names.append(name)
        else:
            other += 1
    names.sort()
    missing: list[str] = []
    if relevant_filenames_file:
        relevant = read_relevant_filenames(relevant_filenames_file)
        present = set(names)
        missing = sorted(relevant - present)
        names = [n for n in names if n in relevant]
        if missing:
            log.warning(
                "%d entries of relevant_filenames_file are not in the input, e.g. %s",
                len(missing),
                missing[:3],
            )
    for name, reason in sorted(odd.items())[:20]:
        log.warning("skipped %s: %s", name, reason)
    if len(odd) > 20:
        log.warning("skipped %d more odd entries (all listed in report.json, ignored.entries)", len(odd) - 20)
    # Object keys are untrusted: a name that is not a clean relative path is listed (check reports it
    # as corrupt with its reason) but never opened, here or anywhere (kurate.io.names).
    unsafe = [n for n in names if unsafe_reason(n)]
    if unsafe:
        log.warning(
            "%d name(s) under %s are not clean relative paths and will be reported as corrupt, never "
            "read: %s",
            len(unsafe),
            input_dir,
            [repr(n) for n in unsafe[:5]],
        )
    n_videos = sum(1 for n in names if video.is_video(n) and not unsafe_reason(n))
    extra: dict[str, Any] = {
        "ignored_other_extensions": other,
        "skipped_names": [repr(s) for s in skipped],
        "skipped_entries": [[name, reason] for name, reason in sorted(odd.items())],
        "unsafe_names": len(unsafe),
        "relevant_missing": missing[:100],
        "relevant_missing_count": len(missing),
    }
    if n_videos:
        flist = _expand_videos(input_dir, names, use_frame_count_metadata, extra)
    else:
        flist = filelist.FileList(root=input_dir, names=names, extra=extra)
    extra["input_count"] = len(flist.names)
    log.info(
        "listed %d sample(s) under %s: %d image(s), %d video(s) (%d file(s) with other extensions ignored)",
        len(flist.names),
        input_dir,
        len(names) - n_videos,
        n_videos,
        other,
    )
    return flist


def _expand_videos(
    root: str, names: list[str], use_metadata: bool, extra: dict[str, Any]
) -> filelist.FileList:
    """Replace each video by its frames (probed in parallel threads: demuxing is mostly I/O)."""
    vids = [n for n in names if video.is_video(n) and not unsafe_reason(n)]  # the others stay one row
    workers = max(1, min(len(vids), 2 * (os.cpu_count() or 1), 16))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        infos = dict(
            zip(
                vids,
                pool.map(lambda n: video.probe(filelist.sample_uri(root, n), n, use_metadata), vids),
                strict=True,
            )
        )
    out: list[str] = []
    cols: dict[str, list[str]] = {"video": [], "frame": [], "time_s": []}
    mismatches = []
    for name in names:
        info = infos.get(name)
        if info is None:  # an image
            out.append(name)
            cols["video"].append("")
            cols["frame"].append("")
            cols["time_s"].append("")
            continue
        if info.error or info.count == 0:  # listed by its file name; the check phase says why
            out.append(name)
            cols["video"].append(name)
            cols["frame"].append("")
            cols["time_s"].append("")
            continue
        times = info.times or []
        for i in range(info.count):
            out.append(video.frame_name(name, i, info.count))
            cols["video"].append(name)
            cols["frame"].append(str(i))
            cols["time_s"].append(f"{times[i]:g}" if i < len(times) else "")
        mm = info.mismatch()
        if mm:
            mismatches.append(mm)
            log.warning(
                "%s: container metadata says %s frames but %d were counted",
                name,
                mm.get("metadata", mm.get("metadata_estimate")),
                info.counted,
            )
    extra["videos"] = {n: i.to_json() for n, i in infos.items()}
    extra["video_count"] = len(vids)
    extra["image_count"] = len(names) - len(vids)
    extra["use_frame_count_metadata"] = bool(use_metadata)
    extra["frame_count_mismatches"] = mismatches
    return filelist.FileList(root=root, names=out, columns=cols, extra=extra)


@_entry.reported("ingest")
@timed("ingest", "files_out")
def run_ingest(files_out: str, config: dict[str, Any]) -> dict[str, Any]:
    """Phase function: list the input and write the file-list artifact to ``files_out``."""
    input_dir = config.get("input_dir") or (config.get("datasource") or {}).get("dataset_id") or ""
    if not input_dir:
        raise ConfigError("input_dir", "missing; set input_dir=<folder or URI> (or datasource.dataset_id)")
    use_meta = bool((config.get("datasource") or {}).get("use_frame_count_metadata", False))
    flist = list_input(str(input_dir), str(config.get("relevant_filenames_file") or ""), use_meta)
    if not flist.names:
        raise KurateError(f"no image or video files found under {input_dir}")
    filelist.write(files_out, flist)
    return flist.extra


def main(argv: Sequence[str]) -> int:
    """``python -m kurate.phases.ingest --files-out PATH --config JSON``."""
    args = _entry.parse(argv, __doc__ or "", [], ["files_out"])
    return _entry.run_main(lambda: run_ingest(args.files_out, _entry.load_json_arg(args.config)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
