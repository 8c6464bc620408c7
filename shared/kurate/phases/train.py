"""Train phase: self-supervised training (SimCLR) on the clean samples before embedding.

Its output, a model artifact (:mod:`kurate.models.model_io`), feeds the embed phase. With
``enable_training`` off the phase only writes the marker ``{"trained": false}`` (no torch import), so the
pipeline keeps one shape whether or not it trains. When training, epoch checkpoints go to
``checkpoint_dir`` (the run's ``checkpoints/``: a rerun resumes from its ``last.ckpt``) and the trained
model is also written to ``checkpoint_out`` (the run's ``checkpoint_latest.ckpt``, loadable with
``checkpoint=``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from kurate.errors import KurateError
from kurate.io import filelist
from kurate.models import model_io
from kurate.phases import _entry

log = logging.getLogger("kurate.train")


@_entry.reported("train")
def run_train(clean_in: str, model_out: str, config: dict[str, Any]) -> dict[str, Any]:
    """Phase function: train on the clean list into ``model_out`` (or write the 'not trained' marker)."""
    if not config.get("enable_training"):
        meta: dict[str, Any] = {"trained": False}
        model_io.write_meta(model_out, meta)
        log.info("training is disabled (enable_training=False): nothing to train")
        return meta
    from kurate.models import training  # torch and Lightning are imported only when we really train

    files = filelist.read(clean_in)
    if not files.names:
        raise KurateError("no valid sample left to train on (all inputs are corrupt or duplicates)")
    settings = training.TrainSettings.from_config(config)
    result = training.train(files, settings, str(config.get("checkpoint_dir") or ""))
    payload = training.checkpoint_payload(result, settings)
    training.write_checkpoint(model_io.model_file(model_out), payload)
    latest = str(config.get("checkpoint_out") or "")
    if latest:
        training.write_checkpoint(latest, payload)
    meta = {
        "trained": True,
        "model": dict(settings.model),
        "started_from": result.start_source,
        "resumed_from_epoch": result.start_epoch,
        "epochs": payload["kurate"]["epochs"],
        "epochs_this_run": len(result.epochs),
        "final_loss": result.final_loss,
        "images_per_second": result.images_per_second,
        "device": result.device,
        "precision": result.precision,
        "seconds": result.seconds,
        "checkpoint": latest,
        "failed": [[n, r] for n, r in result.failed],
    }
    model_io.write_meta(model_out, meta)
    log.info(
        "trained %s for %d epoch(s) (%d in this run) on %d image(s): final loss %.4f, %.1f images/s on %s%s",
        settings.model["name"],
        meta["epochs"],
        meta["epochs_this_run"],
        len(files.names),
        result.final_loss,
        result.images_per_second,
        result.device,
        f"; saved {latest}" if latest else "",
    )
    return meta


def main(argv: Sequence[str]) -> int:
    """``python -m kurate.phases.train --clean-in PATH --model-out PATH --config JSON``."""
    a = _entry.parse(argv, __doc__ or "", ["clean_in"], ["model_out"])
    cfg = _entry.load_json_arg(a.config)
    return _entry.run_main(lambda: run_train(a.clean_in, a.model_out, cfg))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
