"""Check phase: corrupt files and exact duplicates are listed and skipped, never fatal."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from kurate.io import filelist, storage
from kurate.io.timing import timed
from kurate.media import image, quality
from kurate.phases import _entry
from kurate.pool import datapool

log = logging.getLogger("kurate.check")


@_entry.reported("check")
@timed("check", "clean_out", "corrupt_out", "duplicates_out")
def run_check(
    files_in: str, clean_out: str, corrupt_out: str, duplicates_out: str, config: dict[str, Any]
) -> dict:
    """Phase function: read the listed files, write the clean, corrupt and duplicate lists."""
    files = filelist.read(files_in)
    cc = config.get("corruptness_check") or {}
    result = quality.check_files(
        files,
        enable_corruptness_check=bool(config.get("enable_corruptness_check", True)),
        remove_exact_duplicates=bool(config.get("remove_exact_duplicates", True)),
        max_pixels=int(cc.get("max_image_pixels", image.DEFAULT_MAX_PIXELS)),
        workers=int(config.get("workers", -1)),
        corruption_threshold=float(cc.get("corruption_threshold", 0.1)),
        strict_jpeg=bool(config.get("strict_jpeg_check", True)),
    )
    clean = result.clean
    seen_count = 0
    state = str(config.get("datapool_state") or "")
    if state:  # datasource.process_all=False: samples already in the datapool are not processed again
        new, seen = datapool.split_seen(clean, datapool.seen_index(state))
        seen_count = len(seen)
        filelist.write(storage.join(clean_out, datapool.SEEN_LIST), clean.subset(seen))
        clean = clean.subset(new)
        clean.extra["datapool_seen"] = seen_count
        log.info(
            "%d sample(s) already in the datapool (same name and content): not processed again", len(seen)
        )
    filelist.write(clean_out, clean)
    filelist.write(corrupt_out, result.corrupt)
    filelist.write(duplicates_out, result.duplicates)
    summary = quality.summarize(result)
    summary["datapool_seen"] = seen_count
    return summary


def main(argv: Sequence[str]) -> int:
    """``python -m kurate.phases.check --files-in P --clean-out P --corrupt-out P --duplicates-out P``."""
    a = _entry.parse(argv, __doc__ or "", ["files_in"], ["clean_out", "corrupt_out", "duplicates_out"])
    cfg = _entry.load_json_arg(a.config)
    return _entry.run_main(lambda: run_check(a.files_in, a.clean_out, a.corrupt_out, a.duplicates_out, cfg))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
