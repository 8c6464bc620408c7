"""Deprecated alias of :mod:`kurate.models.detection` (``save_detector`` was documented here).

Kept importable for one release; new code imports ``kurate.models.detection``. Importing it imports
torch. Nothing inside kurate imports this module (an import contract says so).
"""

from kurate.models.detection import build_detector, fcos_tiny, load_detector, save_detector

__all__ = ["build_detector", "fcos_tiny", "load_detector", "save_detector"]
