"""Deprecated alias of :mod:`kurate.deploy.images` (``python -m kurate.images`` keeps working).

Kept for one release; new code and build scripts use ``kurate.deploy.images``. Nothing inside kurate
imports this module (an import contract says so).
"""

import sys

from kurate.deploy.images import DEFAULT_REGISTRY, IMAGES, PHASES, image_for, main, registry

__all__ = ["DEFAULT_REGISTRY", "IMAGES", "PHASES", "image_for", "main", "registry"]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
