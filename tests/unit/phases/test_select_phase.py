"""Select phase: no stopping condition is a complete run (every valid sample, in input order)."""

from __future__ import annotations

import numpy as np
import pytest

from kurate.io import embeddings_io, filelist
from kurate.phases.select import run_select


@pytest.fixture
def embedded(tmp_path):
    names = [f"img_{i:02d}.png" for i in range(9)]
    x = np.random.default_rng(0).normal(size=(9, 4)).astype(np.float32)
    embeddings_io.write_embeddings(str(tmp_path / "emb"), names, x, {"root": "/data", "source": "test"})
    filelist.write(
        str(tmp_path / "files"), filelist.FileList(root="/data", names=names, extra={"input_count": 11})
    )
    return tmp_path, names


@pytest.mark.parametrize("method", ["coreset", "random", "CORESET"])
def test_no_stopping_condition_selects_every_valid_sample(embedded, method, caplog):
    tmp, names = embedded
    cfg = {"method": method, "stopping_condition": {"n_samples": -1, "min_distance": -1.0}}
    with caplog.at_level("INFO"):
        extra = run_select(str(tmp / "emb"), str(tmp / "files"), str(tmp / "sel"), cfg)
    sel = filelist.read(str(tmp / "sel"))
    assert sel.names == names  # all of them, in input order: no greedy ordering was computed
    assert extra["stop_reason"] == "no stopping condition" and extra["selected"] == 9
    assert all(d == "nan" for d in sel.column("pick_distance"))
    assert any("no stopping condition" in r.getMessage() for r in caplog.records)


def test_a_stopping_condition_still_stops(embedded):
    tmp, _ = embedded
    cfg = {"method": "coreset", "stopping_condition": {"n_samples": 3, "min_distance": -1.0}}
    assert run_select(str(tmp / "emb"), str(tmp / "files"), str(tmp / "sel"), cfg)["selected"] == 3
