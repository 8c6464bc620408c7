"""Samples as pixels: images and listed video frames of a file list, decoded in one pass per video.

The one sample decoder of the phases that need pixels of arbitrary rows (pretag, training, debug images).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from PIL import Image

from kurate.errors import CorruptFileError
from kurate.io import filelist
from kurate.media import video
from kurate.media.image import DEFAULT_MAX_PIXELS, load_image


def iter_samples(
    files: filelist.FileList, rows: Sequence[int], max_pixels: int = DEFAULT_MAX_PIXELS
) -> Iterator[tuple[int, Any, str]]:
    """``(row, upright RGB PIL image or None, reason)`` for ``rows`` of the file list ``files``.

    Images are decoded one by one, then video frames from their video, one pass per video (only the
    listed frames, stopping after the last). A video listed by its file name (ingest could not expand it
    into frames) gets the reason it cannot be opened. Nothing here is fatal: a sample that cannot be
    decoded comes back as None with its reason.
    """
    videos = files.columns.get("video") or [""] * len(files)
    frames = files.columns.get("frame") or [""] * len(files)
    by_video: dict[str, dict[int, int]] = {}
    for r in rows:
        if videos[r] and frames[r]:
            by_video.setdefault(videos[r], {})[int(frames[r])] = r
            continue
        name = files.names[r]
        uri = filelist.sample_uri(files.root, name)
        if videos[r]:
            yield r, None, _unopenable_reason(uri)
            continue
        try:
            yield r, load_image(uri, name, max_pixels), ""
        except CorruptFileError as exc:
            yield r, None, exc.reason
        except OSError as exc:
            yield r, None, f"cannot read file: {exc.strerror or exc}"
    for vid, wanted in sorted(by_video.items()):
        try:
            for index, rgb, reason in video.iter_selected_rgb(
                filelist.sample_uri(files.root, vid), set(wanted)
            ):
                yield wanted[index], (Image.fromarray(rgb, "RGB") if rgb is not None else None), reason
        except CorruptFileError as exc:
            for r in wanted.values():
                yield r, None, exc.reason


def _unopenable_reason(uri: str) -> str:
    """Why a video listed by its file name gives no frames."""
    try:
        with video.open_video(uri):
            return "video holds no usable frames"
    except CorruptFileError as exc:
        return exc.reason
