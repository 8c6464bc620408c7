"""Each component through kfp.local's SubprocessRunner: the exact code Kubeflow runs, on this machine.

kfp.local does not take artifacts as arguments of a lone component, so each test wraps the component
in a one-task pipeline fed by ``dsl.importer`` from artifacts the library wrote.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from kfp import dsl, local

from kurate.components.check.component import check
from kurate.components.embed.component import embed
from kurate.components.export.component import export
from kurate.components.ingest.component import ingest
from kurate.components.pretag.component import pretag
from kurate.components.select.component import select
from kurate.io import embeddings_io, filelist
from kurate.io import predictions as preds_io
from kurate.io.artifacts import EmbeddingsArtifact, FileListArtifact, PredictionsArtifact
from kurate.phases.check import run_check
from kurate.phases.embed import run_embed
from kurate.phases.ingest import run_ingest
from kurate.phases.pretag import run_pretag
from kurate.phases.select import run_select
from tests.helpers import make_image_folder

EMBED_CFG = {
    "lightly": {
        "model": {"name": "resnet-18", "num_ftrs": 16},
        "collate": {"input_size": 32},
        "loader": {"batch_size": 4, "num_workers": 0},
        "pre_trained": False,
        "seed": 1,
    }
}
SELECT_CFG = {
    "method": "coreset",
    "stopping_condition": {"n_samples": 4, "min_distance": -1},
    "scorer": "object-frequency",
    "scorer_config": {"frequency_penalty": 0.25, "min_score": 0.1},
}


def _pretag_cfg(tmp: Path) -> dict:
    return {"pretagging": True, "pretagging_config": str(tmp / "pretag.yaml")}


def _imp(path: Path, cls=FileListArtifact):
    return dsl.importer(artifact_uri=str(path), artifact_class=cls, reimport=False).output


def _output(root: Path, task: str, name: str) -> str:
    found = sorted(root.glob(f"*/{task}/{name}"))
    assert len(found) == 1, f"expected one {task}/{name} under {root}, got {found}"
    return str(found[0])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Input data and every intermediate artifact, made by the library (no KFP)."""
    tmp = tmp_path_factory.mktemp("components")
    data = make_image_folder(tmp / "input", n=10, n_dup=2)
    kinds = ("files", "clean", "corrupt", "duplicates", "embeddings", "predictions", "selection")
    a = {k: tmp / "lib" / k for k in kinds}
    run_ingest(str(a["files"]), {"input_dir": str(data.root)})
    run_check(str(a["files"]), str(a["clean"]), str(a["corrupt"]), str(a["duplicates"]), {"workers": 1})
    run_embed(str(a["clean"]), str(a["embeddings"]), EMBED_CFG)
    # Predictions the user supplies (no torch): image i holds i % 4 objects of classes 0, 0, 1, ...
    lines = [
        {"file_name": n, "predictions": [{"category_id": j // 2, "bbox": [1, 1, 5, 5], "score": 0.9}
                                         for j in range(i % 4)]}
        for i, n in enumerate(sorted(data.images))
    ]  # fmt: skip
    (tmp / "preds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (tmp / "pretag.yaml").write_text(f"source: predictions\npredictions: {tmp / 'preds.jsonl'}\n")
    run_pretag(str(a["clean"]), str(a["predictions"]), _pretag_cfg(tmp))
    run_select(str(a["embeddings"]), str(a["files"]), str(a["selection"]), SELECT_CFG, str(a["predictions"]))
    return data, a, tmp


@pytest.fixture
def kfp_root(tmp_path):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
    return tmp_path / "root"


def test_ingest_component(world, kfp_root):
    data, _, _ = world
    task = ingest(config=json.dumps({"input_dir": str(data.root)}))
    fl = filelist.read(task.outputs["files"].path)
    assert fl.names == data.listed and fl.root == str(data.root)


def test_check_component(world, kfp_root):
    data, a, _ = world

    @dsl.pipeline(name="t-check")
    def p():
        check(config=json.dumps({"remove_exact_duplicates": True}), files=_imp(a["files"]))

    p()
    assert filelist.read(_output(kfp_root, "check", "clean")).names == sorted(data.images)
    assert sorted(filelist.read(_output(kfp_root, "check", "corrupt")).names) == sorted(data.corrupt)
    assert sorted(filelist.read(_output(kfp_root, "check", "duplicates")).names) == sorted(data.duplicates)


def test_embed_component(world, kfp_root):
    data, a, _ = world

    @dsl.pipeline(name="t-embed")
    def p():
        embed(config=json.dumps(EMBED_CFG), clean=_imp(a["clean"]))

    p()
    names, x, meta = embeddings_io.read_embeddings(_output(kfp_root, "embed", "embeddings"))
    assert list(names) == sorted(data.images)
    assert x.shape == (len(data.images), 16) and x.dtype == np.float32 and np.isfinite(x).all()
    _, x_lib, _ = embeddings_io.read_embeddings(str(a["embeddings"]))
    np.testing.assert_allclose(x, x_lib, atol=1e-5)  # same code, same seed: same embeddings
    assert "random" in meta["source"]


def test_pretag_component(world, kfp_root):
    data, a, tmp = world

    @dsl.pipeline(name="t-pretag")
    def p():
        pretag(config=json.dumps(_pretag_cfg(tmp)), clean=_imp(a["clean"]))

    p()
    out = _output(kfp_root, "pretag", "predictions")
    assert dict(preds_io.iter_records(out)) == dict(preds_io.iter_records(str(a["predictions"])))
    meta = preds_io.read_meta(out)
    assert meta["count"] == len(data.images) and meta["objects"] == sum(
        i % 4 for i in range(len(data.images))
    )


def test_select_component(world, kfp_root):
    data, a, _ = world

    @dsl.pipeline(name="t-select")
    def p():
        select(
            config=json.dumps(SELECT_CFG),
            embeddings=_imp(a["embeddings"], EmbeddingsArtifact),
            files=_imp(a["files"]),
            predictions=_imp(a["predictions"], PredictionsArtifact),
            clean=_imp(a["clean"]),
        )

    p()
    sel = filelist.read(_output(kfp_root, "select", "selection"))
    assert len(sel.names) == 4 and len(set(sel.names)) == 4 and set(sel.names) <= set(data.images)
    assert sel.names == filelist.read(str(a["selection"])).names
    assert sel.extra["scorer"]["active"] and len(sel.column("score")) == 4  # weighted by the predictions


def test_export_component(world, kfp_root):
    data, a, tmp = world
    run_dir = tmp / "out" / "run"

    @dsl.pipeline(name="t-export")
    def p():
        export(
            config=json.dumps(
                {
                    "run_output": str(run_dir),
                    "dump_dataset": True,
                    "output_image_size": 16,
                    "append_weak_labels": True,
                }
            ),
            files=_imp(a["files"]),
            clean=_imp(a["clean"]),
            corrupt=_imp(a["corrupt"]),
            duplicates=_imp(a["duplicates"]),
            embeddings=_imp(a["embeddings"], EmbeddingsArtifact),
            selection=_imp(a["selection"]),
            predictions=_imp(a["predictions"], PredictionsArtifact),
        )

    p()
    sampled = (run_dir / "filenames" / "sampled_filenames.txt").read_text().splitlines()
    assert sorted(sampled) == sorted(filelist.read(str(a["selection"])).names)
    dumped = [p for p in (run_dir / "data" / "sampled").rglob("*") if p.is_file()]
    assert len(dumped) == 4 and all(d.suffix == ".png" for d in dumped)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["counts"]["available"] == len(data.listed)
    assert report["counts"]["selected"] == 4
    weak = json.loads((run_dir / "data" / "weak_labels.json").read_text())
    assert [s["file_name"] for s in weak["samples"]] == sorted(sampled)
    assert report["pretagging"]["active"] and report["selection"]["scorer"]["active"]
