"""The train component through kfp.local, feeding the embed component's optional model input (the DAG's
new edge), and the disabled case (a marker; embed then uses its own weights)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from kfp import dsl, local

from kurate.components.embed.component import embed
from kurate.components.train.component import train
from kurate.io import embeddings_io, filelist
from kurate.io.artifacts import FileListArtifact
from kurate.io.filelist import FileList
from kurate.models import model_io
from tests.helpers import make_structure_folder

MODEL = {"name": "resnet-9", "width": 0.125, "num_ftrs": 16, "out_dim": 24}
EMBED_CFG = {
    "lightly": {
        "model": MODEL,
        "collate": {"input_size": 32},
        "loader": {"batch_size": 4, "num_workers": 0},
        "pre_trained": False,
        "seed": 1,
    }
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train_component")
    labels = make_structure_folder(tmp / "images", n_per_group=3, size=32)
    path = tmp / "clean"
    filelist.write(str(path), FileList(str(tmp / "images"), sorted(labels)))
    return path, sorted(labels)


@pytest.fixture
def kfp_root(tmp_path):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
    return tmp_path / "root"


def _one(root: Path, pattern: str) -> str:
    found = sorted(root.glob(pattern))
    assert len(found) == 1, (pattern, found)
    return str(found[0])


@pytest.mark.parametrize("enabled", [pytest.param(True, marks=pytest.mark.slow), False])  # True: see e2e
def test_train_feeds_embed(clean, kfp_root, tmp_path, enabled):
    path, names = clean
    train_cfg = {"enable_training": False}
    if enabled:
        train_cfg = {
            "enable_training": True,
            "checkpoint_dir": str(tmp_path / "run" / "checkpoints"),
            "checkpoint_out": str(tmp_path / "run" / "checkpoint_latest.ckpt"),
            "lightly": {
                **EMBED_CFG["lightly"],
                "trainer": {"max_epochs": 1, "enable_model_summary": False},
                "optimizer": {"lr": 0.5},
            },
        }

    @dsl.pipeline(name="t-train-embed")
    def p():
        src = dsl.importer(artifact_uri=str(path), artifact_class=FileListArtifact, reimport=False).output
        t = train(config=json.dumps(train_cfg), clean=src)
        embed(config=json.dumps(EMBED_CFG), clean=src, model=t.outputs["model"])

    p()
    ckpt, meta = model_io.read(_one(kfp_root, "*/train/model"))
    got_names, x, emeta = embeddings_io.read_embeddings(_one(kfp_root, "*/embed/embeddings"))
    assert list(got_names) == names and x.shape == (len(names), 16) and np.isfinite(x).all()
    if enabled:
        assert meta["trained"] and meta["epochs"] == 1 and ckpt.endswith("model.ckpt")
        assert (tmp_path / "run" / "checkpoint_latest.ckpt").is_file()
        assert emeta["source"] == f"trained in this run: {tmp_path / 'run' / 'checkpoint_latest.ckpt'}"
    else:
        assert ckpt == "" and meta["trained"] is False
        assert emeta["source"] == "random initialisation (seed 1)" and "training" not in emeta
