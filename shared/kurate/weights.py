"""Deprecated alias of :mod:`kurate.models.weights` (``python -m kurate.weights`` keeps working).

Kept for one release; image builds use ``python -m kurate.models.weights``. Nothing inside kurate
imports this module (an import contract says so).
"""

import sys

from kurate.models.weights import bake, main, model_settings, zoo_entries

__all__ = ["bake", "main", "model_settings", "zoo_entries"]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
