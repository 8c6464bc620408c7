"""The input is never written to: every place kurate writes is resolved (symlinks too) and refused
at start (exit 2, naming the key) when it lies inside ``input_dir`` — before anything is created."""

from __future__ import annotations

import os

import pytest

from kurate.config.load import compose_config
from kurate.errors import ConfigError
from kurate.plan import make_plan
from tests.helpers import make_image_folder

OK = ["stopping_condition.n_samples=2"]


def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.is_dir()) for p in root.rglob("*"))


def _refused(overrides, key, watched):
    before = _snapshot(watched)
    with pytest.raises(ConfigError) as err:
        make_plan(compose_config([*OK, *overrides]))
    assert err.value.key == key, str(err.value)
    assert "input" in str(err.value)
    assert _snapshot(watched) == before  # nothing was created in the input
    return err.value


def test_run_folder_inside_the_input(tmp_path):
    """The issue's case: output_dir is the input's parent and run_directory names the input."""
    make_image_folder(tmp_path / "out" / "photos", n=3, n_dup=0)
    _refused(
        [
            f"input_dir={tmp_path / 'out' / 'photos'}",
            f"output_dir={tmp_path / 'out'}",
            "run_directory=photos",
        ],
        "run_directory",
        tmp_path / "out" / "photos",
    )
    _refused(
        [
            f"input_dir={tmp_path / 'out' / 'photos'}",
            f"output_dir={tmp_path / 'out'}",
            "run_directory=photos/inner",
        ],
        "run_directory",
        tmp_path / "out" / "photos",
    )


def test_training_checkpoint_folder_inside_the_input(tmp_path):
    data = make_image_folder(tmp_path / "in", n=3, n_dup=0)
    base = [f"input_dir={data.root}", f"output_dir={tmp_path / 'out'}", "enable_training=True"]
    _refused(
        [*base, f"lightly.checkpoint_callback.dirpath={data.root}"],
        "lightly.checkpoint_callback.dirpath",
        data.root,
    )
    _refused(  # relative to output_dir, climbing into the input
        [*base, "lightly.checkpoint_callback.dirpath=../in/ckpt"],
        "lightly.checkpoint_callback.dirpath",
        data.root,
    )


def test_datapool_and_its_cache_inside_the_input(tmp_path):
    data = make_image_folder(tmp_path / "in", n=3, n_dup=0)
    base = [f"input_dir={data.root}", f"output_dir={tmp_path / 'out'}"]
    _refused([*base, f"datapool.dataset_id={data.root / 'pool'}"], "datapool.dataset_id", data.root)
    os.symlink(data.root / "sub", tmp_path / "pool-link")  # a symlink that points into the input
    _refused([*base, f"datapool.dataset_id={tmp_path / 'pool-link'}"], "datapool.dataset_id", data.root)


def test_symlinked_output_folders_that_lead_into_the_input(tmp_path):
    data = make_image_folder(tmp_path / "in", n=3, n_dup=0)
    (data.root / "sub").mkdir(exist_ok=True)
    os.symlink(data.root / "sub", tmp_path / "out-link")
    _refused([f"input_dir={data.root}", f"output_dir={tmp_path / 'out-link'}"], "output_dir", data.root)
    (tmp_path / "out").mkdir()
    os.symlink(data.root, tmp_path / "out" / "r")  # the run folder itself is a link into the input
    _refused(
        [f"input_dir={data.root}", f"output_dir={tmp_path / 'out'}", "run_directory=r"],
        "run_directory",
        data.root,
    )
    os.symlink(data.root, tmp_path / "out" / ".kurate-cache")  # the output folder's embedding cache
    _refused([f"input_dir={data.root}", f"output_dir={tmp_path / 'out'}"], "output_dir", data.root)


def test_the_temp_folder_inside_the_input(tmp_path, monkeypatch):
    import tempfile

    data = make_image_folder(tmp_path / "in", n=3, n_dup=0)
    monkeypatch.setenv("TMPDIR", str(data.root))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile caches its choice
    _refused([f"input_dir={data.root}", f"output_dir={tmp_path / 'out'}"], "TMPDIR", data.root)


def test_outputs_beside_the_input_are_fine(tmp_path):
    data = make_image_folder(tmp_path / "in", n=3, n_dup=0)
    plan = make_plan(
        compose_config(
            [
                *OK,
                f"input_dir={data.root}",
                f"output_dir={tmp_path / 'out'}",
                "run_directory=in",  # same name as the input, but under output_dir
                "enable_training=True",
                "datapool.name=pool",
            ]
        )
    )
    assert plan.run_dir == str(tmp_path / "out" / "in")
