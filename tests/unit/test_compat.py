"""The import paths users may have used before the library moved into layers keep working for one release."""

import importlib
import subprocess
import sys

import pytest

ALIASES = {
    "kurate.select": "kurate.selection.coreset",
    "kurate.images": "kurate.deploy.images",
    "kurate.weights": "kurate.models.weights",
    "kurate.detection": "kurate.models.detection",
}


@pytest.mark.parametrize("old, new", sorted(ALIASES.items()))
def test_old_path_exports_the_same_objects(old: str, new: str) -> None:
    alias, module = importlib.import_module(old), importlib.import_module(new)
    assert alias.__all__, old
    for name in alias.__all__:
        assert getattr(alias, name) is getattr(module, name), f"{old}.{name}"


def test_documented_coreset_path_selects() -> None:
    import numpy as np

    from kurate.select import coreset

    x = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]], dtype=np.float32)
    picks = coreset(x, n_samples=2)
    assert sorted({int(p) // 2 for p in picks}) == [0, 1]  # one from each far-apart pair


def test_python_m_old_image_module_prints_the_same_names() -> None:
    run = [sys.executable, "-m"]
    old = subprocess.run([*run, "kurate.images"], capture_output=True, text=True, check=True).stdout
    new = subprocess.run([*run, "kurate.deploy.images"], capture_output=True, text=True, check=True).stdout
    assert old == new and "kurate-embed" in old
