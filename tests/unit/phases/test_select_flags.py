"""Lightly's meta-information columns of a precomputed embeddings file, through embed into select:
``masked`` (1 = never selected, no influence on the others) and ``selected`` (1 = already selected:
kept, counted in n_samples, and the coreset picks away from them)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from kurate.errors import ConfigError
from kurate.io import embeddings_io, filelist
from kurate.phases.embed import run_embed
from kurate.phases.select import run_select
from kurate.selection import coreset

N = 40


def _world(tmp: Path, masked=(), selected=(), seed=0):
    """Clean list + ingest list of N samples, a precomputed CSV with the flag columns, its embeddings."""
    names = [f"img_{i:02d}.png" for i in range(N)]
    x = np.random.default_rng(seed).standard_normal((N, 8)).astype(np.float32)
    filelist.write(str(tmp / "clean"), filelist.FileList(root="/data", names=names))
    filelist.write(str(tmp / "files"), filelist.FileList(root="/data", names=names, extra={"input_count": N}))
    header = ["filenames", *(f"embedding_{j}" for j in range(8)), "masked", "selected", "labels"]
    rows = [
        [n, *map(str, x[i]), str(int(i in masked)), str(int(i in selected)), "0"] for i, n in enumerate(names)
    ]
    (tmp / "pre.csv").write_text("\r\n".join(",".join(r) for r in [header, *rows]) + "\r\n")
    run_embed(str(tmp / "clean"), str(tmp / "emb"), {"embeddings": str(tmp / "pre.csv")})
    return names, coreset.normalize(x)


def _select(tmp: Path, out: str, **cfg):
    config = {"method": "coreset", "stopping_condition": {"n_samples": 10}, **cfg}
    extra = run_select(str(tmp / "emb"), str(tmp / "files"), str(tmp / out), config)
    return filelist.read(str(tmp / out)), extra


def test_masked_samples_are_never_selected_and_do_not_steer_the_others(tmp_path):
    masked = {0, 5, 7, 30}
    names, x = _world(tmp_path, masked=masked)
    sel, extra = _select(tmp_path, "sel")
    keep = np.array([i for i in range(N) if i not in masked])
    expected = [names[int(keep[i])] for i in coreset.coreset(x[keep], n_samples=10)]
    assert sel.names == expected  # exactly the coreset of the dataset without the masked rows
    assert not masked & {names.index(n) for n in sel.names}
    assert extra["masked"] == 4 and "preselected" not in extra


def test_selected_samples_are_kept_counted_and_picked_away_from(tmp_path):
    pre = {3, 11}
    names, x = _world(tmp_path, selected=pre)
    sel, extra = _select(tmp_path, "sel")
    assert len(sel.names) == 10 and sel.names[:2] == [names[3], names[11]]  # kept, first
    expected = coreset.coreset(x, n_samples=8, preselected=sorted(pre))
    assert sel.names[2:] == [names[int(i)] for i in expected]
    assert sel.column("preselected") == ["1", "1"] + ["0"] * 8
    assert sel.column("pick_distance")[:2] == ["nan", "nan"]
    assert extra["preselected"] == 2 and extra["selected"] == 10
    # the picks keep away from the kept ones: none is closer to them than the farthest-first rule allows
    d_pre = [min(float(np.linalg.norm(x[names.index(n)] - x[p])) for p in pre) for n in sel.names[2:]]
    picked_d = [float(v) for v in sel.column("pick_distance")[2:]]
    assert all(dp >= pd - 1e-5 for dp, pd in zip(d_pre, picked_d, strict=True))
    # random selection keeps them too and never draws them again
    rnd, _ = _select(tmp_path, "rnd", method="random", seed=4)
    assert rnd.names[:2] == [names[3], names[11]] and len(set(rnd.names)) == 10


def test_n_samples_not_above_the_kept_ones_selects_nothing_new(tmp_path):
    names, _ = _world(tmp_path, selected={1, 2, 3})
    sel, extra = _select(tmp_path, "sel", stopping_condition={"n_samples": 3})
    assert sel.names == [names[1], names[2], names[3]]
    assert any("nothing new is selected" in w for w in extra["warnings"])


def test_masked_wins_over_selected_and_min_distance_counts_the_kept_ones(tmp_path):
    names, x = _world(tmp_path, masked={4}, selected={4, 9})
    sel, extra = _select(tmp_path, "sel", stopping_condition={"n_samples": -1, "min_distance": 1.3})
    assert names[4] not in sel.names and sel.names[0] == names[9]
    assert extra["masked"] == 1 and extra["preselected"] == 1
    assert any("both masked and selected" in w for w in extra["warnings"])
    chosen = [x[names.index(n)] for n in sel.names]
    gaps = [np.linalg.norm(a - b) for i, a in enumerate(chosen) for b in chosen[i + 1 :]]
    assert min(gaps) >= 1.3 - 1e-5 and math.isnan(float(sel.column("pick_distance")[0]))


def test_every_sample_masked_selects_nothing(tmp_path):
    _world(tmp_path, masked=set(range(N)))
    sel, extra = _select(tmp_path, "sel")
    assert sel.names == [] and extra["masked"] == N and extra["stop_reason"] == "exhausted"


def test_flags_do_not_combine_with_sequences(tmp_path):
    _world(tmp_path, masked={1})
    with pytest.raises(ConfigError) as err:
        _select(tmp_path, "sel", selected_sequence_length=2)
    assert err.value.key == "embeddings" and "selected_sequence_length=2" in str(err.value)


def test_a_file_without_the_columns_changes_nothing(tmp_path):
    names, x = _world(tmp_path)
    assert embeddings_io.read_columns(str(tmp_path / "emb")) == {
        "masked": pytest.approx(np.zeros(N)),
        "selected": pytest.approx(np.zeros(N)),
    }
    sel, extra = _select(tmp_path, "sel")
    assert sel.names == [names[int(i)] for i in coreset.coreset(x, n_samples=10)]
    assert "masked" not in extra and "preselected" not in extra and "preselected" not in sel.columns


def _predictions(tmp: Path, names: list[str], people: dict[int, int], cars: dict[int, int]) -> str:
    from kurate.io import predictions as preds_io

    def box(cid: int) -> dict:
        return {"category_id": cid, "bbox": [1, 1, 4, 4], "score": 0.9}

    preds = [[box(1)] * people.get(i, 0) + [box(3)] * cars.get(i, 0) for i in range(len(names))]
    cats = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]
    preds_io.write(str(tmp / "preds"), names, preds, {"source": "test", "categories": cats})
    return str(tmp / "preds")


def test_only_samples_meeting_the_pretagging_requirements_are_selected(tmp_path):
    names, x = _world(tmp_path, selected={2})
    people = {i: 1 + i % 2 for i in range(0, N, 3)}  # every third sample has 1 or 2 persons
    cars = {i: 2 for i in range(0, N, 2)}  # every second one 2 cars
    preds = _predictions(tmp_path, names, people, cars)
    cfg = {"stopping_condition": {"n_samples": 6}, "min_requirements": {"person": 1, "car": 2}}
    extra = run_select(str(tmp_path / "emb"), str(tmp_path / "files"), str(tmp_path / "sel"), cfg, preds)
    sel = filelist.read(str(tmp_path / "sel"))
    ok = [i for i in range(N) if people.get(i, 0) >= 1 and cars.get(i, 0) >= 2]  # multiples of 6
    assert len(ok) == 7 and len(sel.names) == 6 and {names.index(n) for n in sel.names} < set(ok)
    keep = np.array(ok)
    assert sel.names == [names[int(keep[i])] for i in coreset.coreset(x[keep], n_samples=6)]
    assert extra["requirements"] == {
        "min_requirements": {"person": 1, "car": 2},
        "samples": N,
        "met": len(ok),
        "not_met": N - len(ok),
    }
    assert extra["preselected"] == 0  # sample 2 is selected in the file but does not meet them
    strict = {"stopping_condition": {"n_samples": 6}, "min_requirements": {"person": 3, "bus": 0}}
    extra = run_select(str(tmp_path / "emb"), str(tmp_path / "files"), str(tmp_path / "none"), strict, preds)
    assert filelist.read(str(tmp_path / "none")).names == []
    assert extra["requirements"]["unknown_classes"] == ["bus"]
    assert any("no sample meets" in w for w in extra["warnings"])


DIVERSITY = {"strategies": [{"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}}]}


def test_selection_config_honours_masked_and_selected_columns(tmp_path):
    """selection_config (issue 18) with the columns (15b): masked rows take no part, selected rows are kept
    first, count towards n_samples, and DIVERSITY picks away from them — the coreset's picks exactly."""
    masked, pre = {0, 5, 7, 30}, {3, 11}
    names, x = _world(tmp_path, masked=masked, selected=pre)
    config = {"selection_config": {**DIVERSITY, "n_samples": 10}, "seed": 1}
    extra = run_select(str(tmp_path / "emb"), str(tmp_path / "files"), str(tmp_path / "sc"), config)
    sel = filelist.read(str(tmp_path / "sc"))
    assert sel.names[:2] == [names[3], names[11]] and len(sel.names) == 10
    assert not masked & {names.index(n) for n in sel.names}
    keep = np.array([i for i in range(N) if i not in masked])
    local_pre = [int(np.flatnonzero(keep == p)[0]) for p in sorted(pre)]
    expected = coreset.coreset(x[keep], n_samples=8, preselected=local_pre)
    assert sel.names[2:] == [names[int(keep[i])] for i in expected]
    assert sel.column("preselected") == ["1", "1"] + ["0"] * 8
    assert extra["masked"] == 4 and extra["preselected"] == 2 and extra["method"] == "selection_config"
