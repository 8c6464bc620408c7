"""Deprecated alias of :mod:`kurate.selection.coreset` (the coreset's documented import path).

Kept importable for one release so existing user code keeps working; new code imports
``kurate.selection.coreset``. Nothing inside kurate imports this module (an import contract says so).
"""

from kurate.selection.coreset import (
    GPU_MIN_VALUES,
    SelectionResult,
    coreset,
    coreset_with_info,
    normalize,
    random_selection,
    resolve_n_samples,
    select_device,
)

__all__ = [
    "GPU_MIN_VALUES",
    "SelectionResult",
    "coreset",
    "coreset_with_info",
    "normalize",
    "random_selection",
    "resolve_n_samples",
    "select_device",
]
