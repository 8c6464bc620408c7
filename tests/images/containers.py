"""Shared by the container tests (``make test-images``): the engine, the built images, tiny data, outputs."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kurate.deploy import images

#: The image user of every phase image (images/Dockerfile).
IMAGE_USER = "10001:10001"


def engine() -> str:
    """The container engine the images were built with (``make test-images`` passes it)."""
    name = os.environ.get("CONTAINER_ENGINE") or shutil.which("podman") or shutil.which("docker") or ""
    if not name or subprocess.run([name, "info"], capture_output=True).returncode != 0:
        pytest.fail(
            "no working container engine: run `make test-images` (CI first runs "
            "../shared/tools/container-engine setup)"
        )
    return name


def require_images(eng: str, names: tuple[str, ...] = images.IMAGES) -> dict[str, str]:
    """``{name: image}`` of the built images; fails (never skips) when one is missing."""
    found = {n: images.image_for(n) for n in names}
    missing = (
        [i for i in found.values() if subprocess.run([eng, "image", "exists", i]).returncode != 0]
        if os.path.basename(eng) == "podman"
        else [
            i
            for i in found.values()
            if subprocess.run([eng, "image", "inspect", i], capture_output=True).returncode != 0
        ]
    )
    if missing:
        pytest.fail(f"images not built: {', '.join(missing)}; run `make images` (make test-images does)")
    return found


def run_flags() -> list[str]:
    """The machine's extra run flags (the kit's CONTAINER_RUN_FLAGS: ulimits inside its caps)."""
    return os.environ.get("CONTAINER_RUN_FLAGS", "").split()


def tree_digest(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (to prove the input was not written)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


LISTS = ("corrupt_filenames", "duplicate_filenames", "removed_filenames", "sampled_filenames")


def outputs(run_dir: Path) -> tuple[dict[str, list[str]], list[str], np.ndarray]:
    """The four Lightly file lists, and the names and vectors of ``data/embeddings.csv``."""
    lists = {n: (run_dir / "filenames" / f"{n}.txt").read_text().splitlines() for n in LISTS}
    from kurate.io.embeddings_io import read_lightly_csv

    names, x = read_lightly_csv(str(run_dir / "data" / "embeddings.csv"))[:2]
    return lists, list(names), np.asarray(x)


def assert_same_outputs(got: Path, want: Path) -> None:
    """Same four lists and selection; embeddings within 1e-5."""
    got_lists, got_names, got_x = outputs(got)
    want_lists, want_names, want_x = outputs(want)
    assert got_lists == want_lists
    assert want_lists["sampled_filenames"], "the runs selected nothing: the comparison would be vacuous"
    assert got_names == want_names
    np.testing.assert_allclose(got_x, want_x, atol=1e-5)


def writable_by_image_user(path: Path) -> Path:
    """A folder the images' user (uid 10001) can write, as a cluster volume with fsGroup is."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, 10001, 10001)
    else:
        path.chmod(0o777)
    return path
