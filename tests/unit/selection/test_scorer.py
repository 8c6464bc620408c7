"""The object-frequency scorer: its maths on hand-computed examples, and how its weights move a selection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kurate.io import embeddings_io, filelist
from kurate.io import predictions as preds_io
from kurate.io.filelist import FileList
from kurate.phases.select import run_select
from kurate.selection.coreset import coreset_with_info, random_selection
from kurate.selection.scorer import object_frequency, rescale, score_samples


def _box(cid: int) -> dict:
    return {"category_id": cid, "bbox": [1, 2, 3, 4], "score": 0.9}


@pytest.mark.parametrize(
    "classes, penalty, raw",
    [
        ([], 0.25, 0.0),  # no objects
        ([3], 0.25, 1.0),  # one object
        ([1, 2, 3], 0.25, 3.0),  # three classes: 1 each
        ([1, 1, 1], 0.25, 1.5),  # 1 + 0.25 + 0.25
        ([1, 1, 1, 2], 0.25, 2.5),  # (1 + 2 x 0.25) + 1
        ([2, 1, 2, 1, 2], 0.5, 3.5),  # class 2: 1 + 2 x 0.5, class 1: 1 + 0.5
        ([5, 5, 5, 5], 0.0, 1.0),  # penalty 0: only distinct classes count
        ([5, 5], 1.0, 2.0),  # penalty 1: every object counts
    ],
)
def test_object_frequency_by_hand(classes, penalty, raw):
    assert object_frequency(classes, penalty) == pytest.approx(raw)


def test_rescale_by_hand():
    # raw 0 -> min_score, raw 2.5 -> 1, raw 1 -> 0.9 + 0.1 x 1/2.5
    np.testing.assert_allclose(rescale(np.array([0.0, 2.5, 1.0]), 0.9), [0.9, 1.0, 0.94])
    np.testing.assert_allclose(rescale(np.array([1.0, 3.0, 2.0]), 0.0), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(rescale(np.array([2.0, 2.0]), 0.5), [1.0, 1.0])  # no preference at all
    assert rescale(np.array([]), 0.9).size == 0


def _artifact(path, records: dict[str, list[dict]]) -> str:
    preds_io.write(str(path), list(records), list(records.values()), {"source": "test", "categories": []})
    return str(path)


def test_score_samples_from_an_artifact(tmp_path):
    recs = {
        "a.png": [_box(1), _box(1), _box(1), _box(2)],  # 2.5
        "b.png": [],  # 0
        "c.png": [_box(4)],  # 1
    }
    path = _artifact(tmp_path / "p", recs)
    s = score_samples(["c.png", "a.png", "zz_no_line.png", "b.png"], path, "object-frequency", 0.25, 0.9)
    assert s.active and s.reason == ""
    np.testing.assert_allclose(s.raw, [1.0, 2.5, 0.0, 0.0])
    np.testing.assert_allclose(s.weights, [0.94, 1.0, 0.9, 0.9])
    assert s.info["samples_with_predictions"] == 3 and s.info["raw_max"] == 2.5


def test_without_predictions_the_scorer_is_inactive_and_says_why(tmp_path):
    preds_io.write_inactive(str(tmp_path / "off"), "pretagging=False")
    s = score_samples(["a.png"], str(tmp_path / "off"))
    assert not s.active and s.weights is None and "pretagging=False" in s.reason
    s = score_samples(["a.png"], "")
    assert not s.active and "no predictions" in s.reason
    on = _artifact(tmp_path / "on", {"a.png": [_box(1)]})
    s = score_samples(["a.png"], on, scorer="")
    assert not s.active and "no scorer" in s.reason


# ------------------------------------------------------------------------- weights move the selection


def _mirrored_grids() -> tuple[np.ndarray, np.ndarray]:
    """Two identical 10x10 grids (spacing 1) far apart, the second mirrored: a symmetric set."""
    g = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0)), -1).reshape(-1, 2)
    x = np.concatenate([g + [-100.0, 0.0], -g + [100.0, 9.0]]).astype(np.float32)
    return x, np.arange(200) < 100


def _coverage(x: np.ndarray, picks: list[int], group: np.ndarray) -> float:
    """Farthest any point of ``group`` is from the picks inside it."""
    mine = x[[i for i in picks if group[i]]]
    d = np.sqrt(((x[group][:, None] - mine[None]) ** 2).sum(-1)).min(1)
    return float(d.max())


def test_weighted_coreset_covers_high_score_images_finer():
    """Weights scale the distance: a group weighted w gets a covering radius about w times the other's.

    The two groups are mirror images, so unweighted they are covered equally; with group B at weight 0.5,
    a B point is only worth picking once it is twice as far from the selection as any A point.
    """
    x, is_a = _mirrored_grids()
    plain = list(coreset_with_info(x, n_samples=20).indices)
    assert _coverage(x, plain, is_a) == _coverage(x, plain, ~is_a)
    assert abs(int(is_a[plain].sum()) - 10) <= 1
    weights = np.where(is_a, 1.0, 0.5)
    picks = list(coreset_with_info(x, n_samples=20, weights=weights).indices)
    n_a = int(is_a[picks].sum())
    assert n_a >= 14 and 20 - n_a >= 1  # shifted toward A, B still represented
    ratio = _coverage(x, picks, is_a) / _coverage(x, picks, ~is_a)
    assert 0.35 <= ratio <= 0.65, ratio


def test_weighted_random_draw_follows_the_weights():
    """P(first draw is in A) = 100 x 1 / (100 x 1 + 100 x 0.5) = 2/3; unweighted 1/2."""
    _, is_a = _mirrored_grids()
    weights = np.where(is_a, 1.0, 0.5)
    first = [int(random_selection(200, 1, seed=s, weights=weights).indices[0]) for s in range(3000)]
    plain = [int(random_selection(200, 1, seed=s).indices[0]) for s in range(3000)]
    assert abs(float(np.mean(is_a[first])) - 2 / 3) < 0.035  # 4 standard errors
    assert abs(float(np.mean(is_a[plain])) - 1 / 2) < 0.035


@pytest.fixture
def scored_set(tmp_path):
    """Mirrored grids as embeddings; A images hold three kinds of objects, B images one: A scores 1."""
    x, is_a = _mirrored_grids()
    names = [f"{'a' if a else 'b'}/img_{i:03d}.png" for i, a in enumerate(is_a)]
    embeddings_io.write_embeddings(str(tmp_path / "emb"), names, x, {"root": "/data", "source": "test"})
    filelist.write(
        str(tmp_path / "files"), filelist.FileList(root="/data", names=names, extra={"input_count": 200})
    )
    recs = {n: ([_box(1), _box(2), _box(3)] if a else [_box(1)]) for n, a in zip(names, is_a, strict=True)}
    return tmp_path, names, is_a, _artifact(tmp_path / "pred", recs)


@pytest.mark.parametrize("method", ["coreset", "random"])
def test_select_phase_weights_the_selection_with_the_scores(scored_set, method):
    tmp, names, is_a, pred = scored_set
    cfg = {
        "method": method,
        "stopping_condition": {"n_samples": 40},
        "normalize_embeddings": False,
        "seed": 3,
    }
    weighted = {
        **cfg,
        "scorer": "object-frequency",
        "scorer_config": {"frequency_penalty": 0.25, "min_score": 0.3},
    }
    extra = run_select(str(tmp / "emb"), str(tmp / "files"), str(tmp / "w"), weighted, pred)
    sel = filelist.read(str(tmp / "w"))
    share_a = sum(n.startswith("a/") for n in sel.names) / len(sel.names)
    # A weighs 1, B 0.3 (raw 3 vs 1, rescaled to [0.3, 1]); random: P(A) per draw starts at 1/1.3 = 0.77
    assert share_a >= 0.65, share_a
    assert set(sel.column("score")) == {"1", "0.3"}
    assert all((s == "1") == n.startswith("a/") for n, s in zip(sel.names, sel.column("score"), strict=True))
    sc = extra["scorer"]
    assert sc["active"] and sc["mean_selected"] > sc["mean_input"] == pytest.approx(0.65)

    inactive = run_select(str(tmp / "emb"), str(tmp / "files"), str(tmp / "u"), {**cfg, "scorer": ""}, pred)
    plain = filelist.read(str(tmp / "u"))
    assert "score" not in plain.columns and not inactive["scorer"]["active"]
    assert abs(sum(n.startswith("a/") for n in plain.names) / 40 - 0.5) <= 0.2


def test_select_without_predictions_is_unweighted_and_logs_it(scored_set, caplog):
    tmp, *_ = scored_set
    cfg = {"stopping_condition": {"n_samples": 10}, "normalize_embeddings": False}
    with caplog.at_level("INFO", logger="kurate.selection.coreset"):
        extra = run_select(str(tmp / "emb"), str(tmp / "files"), str(tmp / "s1"), cfg)
    assert not extra["scorer"]["active"] and "no predictions" in extra["scorer"]["reason"]
    assert "scorer object-frequency inactive" in caplog.text
    preds_io.write_inactive(str(tmp / "off"), "pretagging=False")
    run_select(str(tmp / "emb"), str(tmp / "files"), str(tmp / "s2"), cfg, str(tmp / "off"))
    assert filelist.read(str(tmp / "s1")).names == filelist.read(str(tmp / "s2")).names
    meta = json.loads((tmp / "s2" / "meta.json").read_text())
    assert "pretagging=False" in meta["extra"]["scorer"]["reason"]


def test_sequence_blocks_weigh_the_mean_score_of_their_frames(tmp_path):
    """selected_sequence_length=4: a block's weight is its frames' mean score; whole blocks come out."""
    names, video, frame, recs = [], [], [], {}
    for v, n_obj in (("busy.mp4", 3), ("calm.mp4", 0)):
        for f in range(16):
            name = f"{v[:-4]}-{f:02d}-mp4.png"
            names.append(name)
            video.append(v)
            frame.append(str(f))
            # busy: 3 classes in every frame but one per block; calm: nothing
            recs[name] = [_box(c) for c in range(n_obj)] if f % 4 else []
    x = np.concatenate([np.eye(4, 8, dtype=np.float32)[np.arange(16) // 4]] * 2)  # 4 block directions, twice
    x[16:] = -x[16:]
    embeddings_io.write_embeddings(str(tmp_path / "emb"), names, x, {"root": "/d", "source": "test"})
    files = FileList(
        root="/d", names=names, columns={"video": video, "frame": frame}, extra={"input_count": 32}
    )
    filelist.write(str(tmp_path / "files"), files)
    pred = _artifact(tmp_path / "pred", recs)
    cfg = {
        "stopping_condition": {"n_samples": 16},
        "selected_sequence_length": 4,
        "scorer_config": {"frequency_penalty": 0.25, "min_score": 0.2},
    }
    # Unit block points: busy blocks at e0..e3 (weight mean(0.2, 1, 1, 1) = 0.8), calm ones at -e0..-e3 (0.2).
    # Unweighted farthest-first: e0, then -e0 (distance 2), then e1, e2 (ties at sqrt 2, lowest index).
    # Weighted: a busy block at sqrt 2 x 0.8 always beats a calm one at <= 2 x 0.2: the four busy blocks.
    extra = run_select(str(tmp_path / "emb"), str(tmp_path / "files"), str(tmp_path / "sel"), cfg, pred)
    sel = filelist.read(str(tmp_path / "sel"))
    assert len(sel.names) == 16 and extra["scorer"]["active"]
    assert sorted(sel.names) == sorted(n for n in names if n.startswith("busy"))
    plain = {**cfg, "scorer": ""}
    run_select(str(tmp_path / "emb"), str(tmp_path / "files"), str(tmp_path / "u"), plain, pred)
    unweighted = filelist.read(str(tmp_path / "u")).names
    assert sum(n.startswith("busy") for n in unweighted) == 12 and len(unweighted) == 16


def test_select_phase_coreset_device(scored_set, monkeypatch):
    """KURATE_SELECT_DEVICE picks where the coreset's steps run (recorded in the selection); the torch steps
    select what the numpy ones do; a bad value is a one-line config error naming the variable."""
    from kurate.errors import ConfigError

    tmp, *_ = scored_set
    cfg = {"stopping_condition": {"n_samples": 12}, "normalize_embeddings": False}
    auto = run_select(str(tmp / "emb"), str(tmp / "files"), str(tmp / "d1"), cfg)
    assert auto["device"] == "cpu"  # small input: the GPU would not pay, whatever the machine
    monkeypatch.setenv("KURATE_SELECT_DEVICE", "cpu:0")
    with pytest.raises(ConfigError) as err:
        run_select(str(tmp / "emb"), str(tmp / "files"), str(tmp / "d2"), cfg)
    assert err.value.key == "KURATE_SELECT_DEVICE" and "auto, cpu, cuda" in str(err.value)
    monkeypatch.setenv("KURATE_SELECT_DEVICE", "CPU")
    forced = run_select(str(tmp / "emb"), str(tmp / "files"), str(tmp / "d3"), cfg)
    assert forced["device"] == "cpu"
    assert filelist.read(str(tmp / "d3")).names == filelist.read(str(tmp / "d1")).names
