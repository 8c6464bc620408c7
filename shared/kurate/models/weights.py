"""Bake pretrained weights into a folder when an image is *built*: Lightly's model zoo, COCO detectors.

kurate never downloads weights at run time (clusters are often offline). The embed image's build
runs ``python -m kurate.models.weights /opt/kurate/weights resnet-18/simclr/d32/w1.0`` (build arg
``PRETRAINED_WEIGHTS``) and sets ``KURATE_WEIGHTS_DIR`` there; at run time
:func:`kurate.models.embedding.find_pretrained` finds the file under the model-zoo URL's basename.
The pretag image's build runs ``python -m kurate.models.weights /opt/kurate/weights --detector default``
(build arg ``DETECTOR_WEIGHTS``: ``default`` is the built-in pretagging detector, or torchvision detector
names) and the pretag phase finds them the same way (:mod:`kurate.models.coco`). Every baked file is
loaded into the model it is for before the build goes on, so a broken download fails the build, not a run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from kurate.errors import ConfigError, KurateError

#: The model-zoo entry of kurate's (and Lightly's) default model settings.
DEFAULT_KEY = "resnet-18/simclr/d32/w1.0"


def zoo_entries() -> dict[str, str]:
    """Lightly's model zoo: ``{"resnet-18/simclr/d32/w1.0": url, ...}``."""
    from lightly.models import ZOO

    return dict(ZOO)


def model_settings(key: str) -> dict[str, object]:
    """``name``, ``num_ftrs`` and ``width`` of a zoo key like ``resnet-18/simclr/d32/w1.0``."""
    try:
        name, _method, dim, width = key.split("/")
        return {"model_name": name, "num_ftrs": int(dim.lstrip("d")), "width": float(width.lstrip("w"))}
    except ValueError:
        raise ConfigError("PRETRAINED_WEIGHTS", f"got {key!r}; allowed: {', '.join(zoo_entries())}") from None


def _bake_one(url: str, dest: str, from_file: str, what: str, verify: Callable[[str], Any]) -> str:
    """Download ``url`` (or copy ``from_file``) into ``dest`` under its file name; returns the path.

    ``verify`` loads the file first: nothing is left behind when it does not load.
    """
    target = os.path.join(dest, url.rsplit("/", 1)[-1])
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest)
    os.close(fd)
    try:
        if from_file:
            shutil.copyfile(from_file, tmp)
        else:
            import torch.hub

            torch.hub.download_url_to_file(url, tmp, progress=False)
        try:
            verify(tmp)
        except KurateError as exc:
            raise KurateError(f"weights for {what} do not load: {exc}") from None
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def bake(keys: Sequence[str], dest: str, from_file: str = "") -> list[str]:
    """Put the weights of every zoo ``key`` into ``dest`` (downloaded, or copied from ``from_file``).

    Returns the written paths; each is verified by loading it into its model.
    """
    from kurate.models.embedding import prepare_model

    zoo = zoo_entries()
    os.makedirs(dest, exist_ok=True)
    written = []
    for key in keys:
        if key not in zoo:
            raise ConfigError("PRETRAINED_WEIGHTS", f"got {key!r}; allowed: {', '.join(zoo)}")
        settings: dict[str, Any] = model_settings(key)

        def verify(path: str, settings: dict[str, Any] = settings) -> Any:
            return prepare_model(checkpoint=path, **settings)

        written.append(_bake_one(zoo[key], dest, from_file, key, verify))
    return written


def detector_names(names: Sequence[str]) -> list[str]:
    """The torchvision detectors of ``names`` (``default``: the built-in one; ``all``: every one)."""
    from kurate.models import coco

    out: list[str] = []
    for n in names:
        picked = (
            list(coco.WEIGHT_FILES) if n == "all" else [coco.BUILTIN_ARCHITECTURE if n == "default" else n]
        )
        for arch in picked:
            if arch not in coco.WEIGHT_FILES:
                raise ConfigError(
                    "DETECTOR_WEIGHTS", f"got {n!r}; allowed: default, all, {', '.join(coco.WEIGHT_FILES)}"
                )
            if arch not in out:
                out.append(arch)
    return out


def bake_detectors(names: Sequence[str], dest: str, from_file: str = "") -> list[str]:
    """Put torchvision's COCO weights of every detector of ``names`` into ``dest`` under their file name.

    Each is verified by loading it into its detector (``from_file``: copy that file instead of
    downloading, for a single detector). Returns the written paths.
    """
    from kurate.models import coco
    from kurate.models.detection import load_detector

    archs = detector_names(names)
    if from_file and len(archs) != 1:
        raise ConfigError("--from-file", "takes exactly one detector")
    os.makedirs(dest, exist_ok=True)
    written = []
    for arch in archs:

        def verify(path: str, arch: str = arch) -> Any:
            return load_detector({"architecture": arch, "checkpoint": path, "categories": coco.categories()})

        written.append(_bake_one(coco.DOWNLOAD_BASE + coco.WEIGHT_FILES[arch], dest, from_file, arch, verify))
    return written


def main(argv: Sequence[str]) -> int:
    """``python -m kurate.models.weights DEST [KEY ...] [--detector NAME ...] [--from-file PATH]``.

    Default key: resnet-18/simclr/d32/w1.0, unless only detectors are asked for.
    """
    p = argparse.ArgumentParser(prog="python -m kurate.models.weights", description=__doc__)
    p.add_argument("dest", help="folder to bake into (the image's KURATE_WEIGHTS_DIR)")
    p.add_argument("keys", nargs="*", help=f"model-zoo keys (default: {DEFAULT_KEY}; 'all' for every one)")
    p.add_argument(
        "--detector",
        nargs="+",
        default=[],
        help="COCO detectors: 'default' (the built-in pretagging detector), 'all', or torchvision names",
    )
    p.add_argument("--from-file", default="", help="copy this local file instead of downloading")
    a = p.parse_args(list(argv))
    keys = a.keys or ([] if a.detector else [DEFAULT_KEY])
    if keys == ["all"]:
        keys = list(zoo_entries())
    try:
        for path in bake(keys, a.dest, a.from_file) if keys else []:
            print(path)
        for path in bake_detectors(a.detector, a.dest, "" if keys else a.from_file):
            print(path)
    except KurateError as exc:
        print(f"kurate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
