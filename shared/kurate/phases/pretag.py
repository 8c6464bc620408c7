"""Pretag phase: object predictions for every clean sample (detector checkpoint or the user's file).

With ``pretagging=False`` it writes an inactive predictions artifact at once (no torch imported), so the
pipeline always has one shape; select then runs unweighted and export writes no weak labels.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from kurate.io import filelist, storage
from kurate.io import predictions as preds_io
from kurate.io.timing import timed
from kurate.media import image, samples
from kurate.models import pretag
from kurate.phases import _entry

log = logging.getLogger("kurate.models.pretag")


@_entry.reported("pretag")
@timed("pretag", "predictions_out")
def run_pretag(clean_in: str, predictions_out: str, config: dict[str, Any]) -> dict[str, Any]:
    """Phase function: write the predictions of the samples of ``clean_in`` into ``predictions_out``.

    ``config``: ``pretagging``, ``pretagging_debug``, and ``settings`` (the validated pretagging settings,
    :func:`kurate.models.pretag.load_settings`) or ``pretagging_config`` (the path of the settings file).
    """
    if config.get("objects"):  # object_level.task_name: the boxes of a task in Lightly's predictions folder
        settings = dict(config["objects"])
    elif not config.get("pretagging", False):
        log.info("pretagging is off: no object predictions (the scorer stays inactive)")
        return preds_io.write_inactive(predictions_out, "pretagging=False")
    else:
        settings = config.get("settings") or pretag.load_settings(str(config.get("pretagging_config") or ""))
    files = filelist.read(clean_in)
    debug = None
    if config.get("pretagging_debug", False):
        storage.makedirs(preds_io.debug_dir(predictions_out))
        debug = pretag.DebugWriter(
            preds_io.debug_dir(predictions_out),
            files.names,
            list(settings.get("categories") or []),
            int(settings.get("debug_max_images", pretag.DEFAULT_DEBUG_IMAGES)),
        )
    max_pixels = int(config.get("max_image_pixels", image.DEFAULT_MAX_PIXELS))
    preds, meta = pretag.run_source(files, settings, max_pixels, on_image=debug)
    if debug is not None and settings["source"] == "predictions":
        # No image was decoded for predictions from a file: decode the ones that get a debug image.
        debug.names = preds_io.category_names(list(meta.get("categories") or []))
        for row, img, _ in samples.iter_samples(files, sorted(debug.rows), max_pixels):
            debug.add(row, img, preds[row])
    sizes = meta.pop("image_sizes", None)  # the detector's: Lightly's normalised boxes need them
    meta = {
        **meta,
        "root": files.root,
        "settings": {k: v for k, v in settings.items() if k != "categories"},
        "debug_images": debug.written if debug is not None else 0,
    }
    full = preds_io.write(predictions_out, files.names, preds, meta, sizes)
    log.info(
        "pretagging: %d object(s) in %d of %d sample(s) (%s)",
        full["objects"],
        full["samples_with_objects"],
        full["count"],
        full["source"],
    )
    return full


def main(argv: Sequence[str]) -> int:
    """``python -m kurate.phases.pretag --clean-in P --predictions-out P --config JSON``."""
    a = _entry.parse(argv, __doc__ or "", ["clean_in"], ["predictions_out"])
    cfg = _entry.load_json_arg(a.config)
    return _entry.run_main(lambda: run_pretag(a.clean_in, a.predictions_out, cfg))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
