"""Each component through kfp.local's SubprocessRunner: the exact code Kubeflow runs, on this machine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kurate import embeddings_io, filelist
from tests.helpers import make_image_folder


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Run ingest → check → embed → select → export once, component by component."""
    from kfp import local

    from kurate.components.check.component import check
    from kurate.components.embed.component import embed
    from kurate.components.export.component import export
    from kurate.components.ingest.component import ingest
    from kurate.components.select.component import select

    tmp = tmp_path_factory.mktemp("components")
    data = make_image_folder(tmp / "input", n=10, n_dup=2)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp / "root"))
    tasks = {}
    tasks["ingest"] = ingest(config=json.dumps({"input_dir": str(data.root)}))
    tasks["check"] = check(config=json.dumps({"remove_exact_duplicates": True}), files=tasks["ingest"].outputs["files"])
    emb_cfg = {"lightly": {"model": {"name": "resnet-18", "num_ftrs": 16}, "collate": {"input_size": 32},
                           "loader": {"batch_size": 4, "num_workers": 0}, "pre_trained": False, "seed": 1}}
    tasks["embed"] = embed(config=json.dumps(emb_cfg), clean=tasks["check"].outputs["clean"])
    tasks["select"] = select(
        config=json.dumps({"method": "coreset", "stopping_condition": {"n_samples": 4, "min_distance": -1}}),
        embeddings=tasks["embed"].outputs["embeddings"],
        files=tasks["ingest"].outputs["files"],
    )
    run_dir = tmp / "out" / "run"
    tasks["export"] = export(
        config=json.dumps({"run_output": str(run_dir), "dump_dataset": True, "output_image_size": 16}),
        files=tasks["ingest"].outputs["files"],
        clean=tasks["check"].outputs["clean"],
        corrupt=tasks["check"].outputs["corrupt"],
        duplicates=tasks["check"].outputs["duplicates"],
        embeddings=tasks["embed"].outputs["embeddings"],
        selection=tasks["select"].outputs["selection"],
    )
    return data, tasks, run_dir


def test_ingest_component(chain):
    data, tasks, _ = chain
    fl = filelist.read(tasks["ingest"].outputs["files"].path)
    assert fl.names == data.listed


def test_check_component(chain):
    data, tasks, _ = chain
    assert sorted(filelist.read(tasks["check"].outputs["corrupt"].path).names) == sorted(data.corrupt)
    assert sorted(filelist.read(tasks["check"].outputs["duplicates"].path).names) == sorted(data.duplicates)
    assert sorted(filelist.read(tasks["check"].outputs["clean"].path).names) == sorted(data.images)


def test_embed_component(chain):
    data, tasks, _ = chain
    names, x, meta = embeddings_io.read_embeddings(tasks["embed"].outputs["embeddings"].path)
    assert list(names) == sorted(data.images)
    assert x.shape == (len(data.images), 16) and x.dtype == np.float32
    assert np.isfinite(x).all()
    assert "random" in meta["source"]


def test_select_component(chain):
    data, tasks, _ = chain
    sel = filelist.read(tasks["select"].outputs["selection"].path)
    assert len(sel.names) == 4 and len(set(sel.names)) == 4
    assert set(sel.names) <= set(data.images)


def test_export_component(chain):
    data, _, run_dir = chain
    sampled = (run_dir / "filenames" / "sampled_filenames.txt").read_text().splitlines()
    assert len(sampled) == 4
    dumped = sorted(p.relative_to(run_dir / "data" / "sampled").as_posix()
                    for p in (run_dir / "data" / "sampled").rglob("*") if p.is_file())
    assert len(dumped) == 4 and all(d.endswith(".png") for d in dumped)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["counts"]["available"] == len(data.listed)
