"""Ingest phase: list the input samples (recursive, by extension, sorted, relative names).

Never cached: a grown folder is always seen. ``relevant_filenames_file`` restricts the list;
entries that escape the input folder are an error.
"""

from __future__ import annotations

import logging
import posixpath
import sys
from collections.abc import Sequence
from typing import Any

from kurate import filelist, media, storage
from kurate.errors import ConfigError, KurateError
from kurate.phases import _entry
from kurate.timing import timed

log = logging.getLogger("kurate.ingest")


def _normalise_relevant(line: str) -> str:
    name = line.replace("\\", "/").strip()
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ConfigError(
            "relevant_filenames_file", f"entry {line!r} is an absolute path; entries are relative"
        )
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../"):
        raise ConfigError("relevant_filenames_file", f"entry {line!r} escapes the input directory")
    return norm


def read_relevant_filenames(uri: str) -> set[str]:
    """The names listed in a relevant-filenames file (blank lines ignored)."""
    try:
        text = storage.read_text(uri)
    except FileNotFoundError:
        raise ConfigError("relevant_filenames_file", f"{uri} does not exist") from None
    return {_normalise_relevant(line) for line in text.splitlines() if line.strip()}


def list_input(input_dir: str, relevant_filenames_file: str = "") -> filelist.FileList:
    """List image samples under ``input_dir`` as a sorted :class:`FileList` with counts in ``extra``."""
    names: list[str] = []
    other = videos = 0
    skipped: list[str] = []
    for name in storage.list_files(input_dir):
        ext = media.extension(name)
        if ext in media.IMAGE_EXTENSIONS:
            if "\n" in name or "\r" in name:
                skipped.append(name)
                continue
            names.append(name)
        elif ext in media.VIDEO_EXTENSIONS:
            videos += 1
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
    if skipped:
        log.warning(
            "skipped %d file(s) whose name contains a newline: %s",
            len(skipped),
            [repr(s) for s in skipped[:5]],
        )
    if videos:
        log.warning("ignored %d video file(s): video input is not supported in this version", videos)
    log.info(
        "listed %d image(s) under %s (%d file(s) with other extensions ignored)", len(names), input_dir, other
    )
    extra: dict[str, Any] = {
        "input_count": len(names),
        "ignored_other_extensions": other,
        "ignored_videos": videos,
        "skipped_names": [repr(s) for s in skipped],
        "relevant_missing": missing[:100],
        "relevant_missing_count": len(missing),
    }
    return filelist.FileList(root=input_dir, names=names, extra=extra)


@timed("ingest", "files_out")
def run_ingest(files_out: str, config: dict[str, Any]) -> dict[str, Any]:
    """Phase function: list the input and write the file-list artifact to ``files_out``."""
    input_dir = config.get("input_dir") or (config.get("datasource") or {}).get("dataset_id") or ""
    if not input_dir:
        raise ConfigError("input_dir", "missing; set input_dir=<folder or URI> (or datasource.dataset_id)")
    flist = list_input(str(input_dir), str(config.get("relevant_filenames_file") or ""))
    if not flist.names:
        raise KurateError(f"no image files found under {input_dir}")
    filelist.write(files_out, flist)
    return flist.extra


def main(argv: Sequence[str]) -> int:
    """``python -m kurate.phases.ingest --files-out PATH --config JSON``."""
    args = _entry.parse(argv, __doc__ or "", [], ["files_out"])
    return _entry.run_main(lambda: run_ingest(args.files_out, _entry.load_json_arg(args.config)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
