"""Container image names, defined once: ``<registry>/kurate-<name>:<package version>``.

Every compile target, the components and ``make images``/``make push`` take the names from here
(``python -m kurate.deploy.images`` prints them for the Makefile), so code and images never drift apart.
Each name is also the image's target in ``images/Dockerfile``; ``kurate`` (the all-in-one image with the
``kurate`` command, the drop-in for Lightly's image) is ``<registry>/kurate:<version>``.
"""

from __future__ import annotations

import os
import sys

from kurate import __version__

DEFAULT_REGISTRY = "ghcr.io/kurate"
PHASES = ("ingest", "check", "train", "embed", "pretag", "select", "export")
#: The all-in-one image: every phase's dependencies and the ``kurate`` command as its entry point.
ALL_IN_ONE = "kurate"
#: Every image (``base`` runs the shard and merge steps), in build order.
IMAGES = ("base", *PHASES, ALL_IN_ONE)


def registry() -> str:
    """The registry prefix: env ``KURATE_REGISTRY`` or the default."""
    return os.environ.get("KURATE_REGISTRY", DEFAULT_REGISTRY).rstrip("/") or DEFAULT_REGISTRY


def image_for(name: str, registry_prefix: str | None = None) -> str:
    """The image of phase ``name`` (or ``base``); its tag is the package version."""
    if name not in IMAGES:
        raise ValueError(f"unknown image {name!r}; allowed: {', '.join(IMAGES)}")
    prefix = (registry_prefix or registry()).rstrip("/")
    if name == ALL_IN_ONE:
        return f"{prefix}/kurate:{__version__}"
    return f"{prefix}/kurate-{name}:{__version__}"


def main(argv: list[str]) -> int:
    """``python -m kurate.deploy.images [NAME]``: one image name, or ``name image`` lines for all."""
    if argv:
        print(image_for(argv[0]))
    else:
        for name in IMAGES:
            print(name, image_for(name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
