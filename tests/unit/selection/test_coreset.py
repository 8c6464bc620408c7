"""Unit tests for kurate.selection.coreset: coreset against a brute-force reference, random, helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kurate.selection.coreset import (
    SelectionResult,
    coreset,
    coreset_with_info,
    normalize,
    random_selection,
    resolve_n_samples,
)

# ----------------------------------------------------------------------------------------------
# brute-force reference: full float64 distance matrix, same documented semantics
# ----------------------------------------------------------------------------------------------


def reference_coreset(
    x: np.ndarray,
    n_samples: int | None = None,
    min_distance: float | None = None,
    preselected: tuple[int, ...] | list[int] = (),
    weights: np.ndarray | None = None,
) -> tuple[list[int], list[float], str]:
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    selected = sorted(set(preselected))
    picks: list[int] = []
    pick_d: list[float] = []
    while True:
        if n_samples is not None and len(picks) >= n_samples:
            return picks, pick_d, "n_samples"
        if len(selected) == n:
            return picks, pick_d, "exhausted"
        if not selected:
            centroid = x.mean(axis=0)
            d_c = np.sqrt(((x - centroid) ** 2).sum(-1))
            i = int(np.argmax(w * d_c))
            picks.append(i)
            pick_d.append(math.inf)
            selected.append(i)
            continue
        mind = dist[:, selected].min(axis=1)
        score = w * mind
        eligible = np.ones(n, dtype=bool)
        eligible[selected] = False
        if min_distance is not None:
            eligible &= mind >= min_distance
        if not eligible.any():
            return picks, pick_d, "min_distance"
        score[~eligible] = -np.inf
        i = int(np.argmax(score))
        picks.append(i)
        pick_d.append(float(mind[i]))
        selected.append(i)


def pairwise(x: np.ndarray, idx: np.ndarray | list[int]) -> np.ndarray:
    p = np.asarray(x, dtype=np.float64)[np.asarray(idx, dtype=np.int64)]
    return np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))


def dists_to_set(x: np.ndarray, idx: np.ndarray | list[int]) -> np.ndarray:
    x64 = np.asarray(x, dtype=np.float64)
    p = x64[np.asarray(idx, dtype=np.int64)]
    return np.sqrt(((x64[:, None, :] - p[None, :, :]) ** 2).sum(-1)).min(axis=1)


def data(seed: int, n: int = 300, d: int = 6) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# coreset vs reference
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_coreset_matches_reference(seed: int) -> None:
    x = data(seed)
    res = coreset_with_info(x, n_samples=40)
    ref, ref_d, reason = reference_coreset(x, n_samples=40)
    assert res.indices.tolist() == ref
    assert res.indices.dtype == np.int64
    assert res.stop_reason == reason == "n_samples"
    assert res.pick_distances[0] == math.inf
    np.testing.assert_allclose(res.pick_distances[1:], ref_d[1:], rtol=1e-4, atol=1e-4)
    assert coreset(x, n_samples=40).tolist() == ref


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_coreset_matches_reference_with_preselected(seed: int) -> None:
    x = data(seed)
    pre = [int(i) for i in np.random.default_rng(seed).choice(len(x), size=7, replace=False)]
    res = coreset_with_info(x, n_samples=30, preselected=pre)
    ref, ref_d, _ = reference_coreset(x, n_samples=30, preselected=pre)
    assert res.indices.tolist() == ref
    assert not set(res.indices.tolist()) & set(pre)
    assert np.isfinite(res.pick_distances).all()
    np.testing.assert_allclose(res.pick_distances, ref_d, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", [20, 21, 22])
@pytest.mark.parametrize("with_pre", [False, True])
def test_coreset_matches_reference_with_weights(seed: int, with_pre: bool) -> None:
    x = data(seed)
    rng = np.random.default_rng(seed + 100)
    w = rng.uniform(0.1, 3.0, size=len(x))
    pre = [0, 5, 17] if with_pre else []
    res = coreset_with_info(x, n_samples=30, preselected=pre, weights=w)
    ref, _, _ = reference_coreset(x, n_samples=30, preselected=pre, weights=w)
    assert res.indices.tolist() == ref
    # the weights really matter on this data
    unweighted, _, _ = reference_coreset(x, n_samples=30, preselected=pre)
    assert ref != unweighted


@pytest.mark.parametrize("seed", [30, 31])
def test_coreset_matches_reference_with_weights_and_min_distance(seed: int) -> None:
    x = data(seed)
    w = np.random.default_rng(seed).uniform(0.0, 2.0, size=len(x))
    res = coreset_with_info(x, min_distance=1.5, preselected=[3], weights=w)
    ref, _, reason = reference_coreset(x, min_distance=1.5, preselected=[3], weights=w)
    assert res.indices.tolist() == ref
    assert res.stop_reason == reason == "min_distance"


def test_large_preselected_set_is_blocked_correctly() -> None:
    # more preselected points and rows than one block (1024 x 2048) so every block edge is crossed
    x = np.random.default_rng(5).standard_normal((4500, 3)).astype(np.float32)
    pre = np.arange(0, 4500, 2)  # 2250 preselected
    got = coreset(x, n_samples=5, preselected=pre)
    mind = dists_to_set(x, pre)
    mind[pre] = -np.inf
    assert got[0] == int(np.argmax(mind))
    assert not set(got.tolist()) & set(pre.tolist())


# ----------------------------------------------------------------------------------------------
# stopping conditions
# ----------------------------------------------------------------------------------------------


def test_stop_n_samples_only() -> None:
    x = data(40)
    res = coreset_with_info(x, n_samples=25)
    assert len(res.indices) == 25
    assert res.stop_reason == "n_samples"


def test_stop_min_distance_only_guarantee_and_maximality() -> None:
    x = data(41)
    md = 1.8
    pre = [2, 9]
    res = coreset_with_info(x, min_distance=md, preselected=pre)
    assert res.stop_reason == "min_distance"
    ref, _, _ = reference_coreset(x, min_distance=md, preselected=pre)
    assert res.indices.tolist() == ref
    chosen = list(res.indices.tolist()) + pre
    d = pairwise(x, chosen)
    off_diag = d[~np.eye(len(chosen), dtype=bool)]
    # selection ∪ preselected is pairwise >= min_distance ... (the preselected pair itself too here)
    assert off_diag.min() >= md
    # ... and maximal: every unselected point is closer than min_distance to something selected
    mind = dists_to_set(x, chosen)
    unselected = np.setdiff1d(np.arange(len(x)), chosen)
    assert (mind[unselected] < md).all()
    assert (res.pick_distances >= md).all()


def test_min_distance_guarantee_without_preselected() -> None:
    x = data(42, n=400, d=3)
    md = 0.9
    res = coreset_with_info(x, min_distance=md)
    d = pairwise(x, res.indices)
    assert d[~np.eye(len(res.indices), dtype=bool)].min() >= md
    mind = dists_to_set(x, res.indices)
    unselected = np.setdiff1d(np.arange(len(x)), res.indices)
    assert (mind[unselected] < md).all()
    assert res.stop_reason == "min_distance"


def test_both_conditions_n_samples_first() -> None:
    x = data(43)
    full = coreset_with_info(x, min_distance=1.0)
    assert len(full.indices) > 10
    res = coreset_with_info(x, n_samples=10, min_distance=1.0)
    assert res.stop_reason == "n_samples"
    assert res.indices.tolist() == full.indices[:10].tolist()


def test_both_conditions_min_distance_first() -> None:
    x = data(44)
    only_md = coreset_with_info(x, min_distance=2.0)
    res = coreset_with_info(x, n_samples=len(x), min_distance=2.0)
    assert res.stop_reason == "min_distance"
    assert res.indices.tolist() == only_md.indices.tolist()
    assert len(res.indices) < len(x)


def test_n_samples_equal_to_eligible_count_reports_n_samples() -> None:
    x = data(45)
    k = len(coreset(x, min_distance=2.0))
    res = coreset_with_info(x, n_samples=k, min_distance=2.0)
    assert res.stop_reason == "n_samples"
    assert len(res.indices) == k


def test_no_stopping_condition_raises() -> None:
    with pytest.raises(ValueError, match="stopping condition"):
        coreset(data(0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_samples": -1},
        {"n_samples": True},
        {"n_samples": 2.0},
        {"min_distance": -0.5},
        {"min_distance": float("nan")},
        {"n_samples": 3, "preselected": [300]},
        {"n_samples": 3, "preselected": [-1]},
        {"n_samples": 3, "preselected": [True, False]},
        {"n_samples": 3, "preselected": [0.5]},
        {"n_samples": 3, "weights": np.ones(5)},
        {"n_samples": 3, "weights": -np.ones(300)},
        {"n_samples": 3, "weights": np.full(300, np.nan)},
    ],
)
def test_invalid_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        coreset(data(0), **kwargs)


def test_non_finite_and_non_2d_embeddings_raise() -> None:
    x = data(0)
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        coreset(x, n_samples=2)
    with pytest.raises(ValueError, match="NaN"):
        random_selection(len(x), 2, seed=0, embeddings=x, min_distance=0.5)
    y = data(0)
    y[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        coreset(y, min_distance=1.0)
    with pytest.raises(ValueError, match="infinite"):
        normalize(y)
    with pytest.raises(ValueError, match="2-D"):
        coreset(np.zeros(5, dtype=np.float32), n_samples=2)


def test_n_samples_larger_than_n_selects_all() -> None:
    x = data(46, n=20)
    res = coreset_with_info(x, n_samples=50)
    assert sorted(res.indices.tolist()) == list(range(20))
    assert res.stop_reason == "exhausted"
    res = coreset_with_info(x, n_samples=50, preselected=[0, 1, 2])
    assert sorted(res.indices.tolist()) == list(range(3, 20))
    assert res.stop_reason == "exhausted"


def test_all_preselected_is_exhausted() -> None:
    res = coreset_with_info(data(0, n=4), n_samples=2, preselected=[0, 1, 2, 3])
    assert res.indices.size == 0
    assert res.stop_reason == "exhausted"


def test_n_samples_zero_selects_nothing() -> None:
    res = coreset_with_info(data(0), n_samples=0)
    assert res.indices.size == 0
    assert res.stop_reason == "n_samples"


# ----------------------------------------------------------------------------------------------
# ties, determinism, duplicates
# ----------------------------------------------------------------------------------------------


def test_deterministic_start_is_farthest_from_centroid() -> None:
    x = np.array([[0, 0], [1, 0], [0, 1], [10, 10], [-1, 0]], dtype=np.float32)
    # centroid (2, 2.2): (10, 10) is farthest
    assert coreset(x, n_samples=1).tolist() == [3]
    x = data(47)
    a = coreset(x, n_samples=20)
    b = coreset(x.copy(), n_samples=20)
    assert a.tolist() == b.tolist()


def test_ties_go_to_lowest_index() -> None:
    # symmetric square around the origin: all four corners tie for the start and the centre is never
    # farther than a corner; duplicates of the corners tie exactly with them.
    x = np.array(
        [[0, 0], [2, 2], [-2, 2], [2, -2], [-2, -2], [2, 2], [-2, -2]],
        dtype=np.float32,
    )
    res = coreset_with_info(x, n_samples=5)
    # start: corners 1..6 tie at distance sqrt(8) from the centroid (0, 0) -> lowest is 1.
    # then (-2,-2) at index 4 (dist sqrt(32)) beats its duplicate at 6; then 2 and 3 tie (dist 4) -> 2.
    assert res.indices.tolist()[:4] == [1, 4, 2, 3]
    ref, _, _ = reference_coreset(x, n_samples=5)
    assert res.indices.tolist() == ref


def test_duplicates_are_not_repicked_and_zero_distance_ties_lowest_index() -> None:
    x = np.array([[0, 0], [0, 0], [5, 0], [5, 0], [0, 0]], dtype=np.float32)
    res = coreset_with_info(x, n_samples=10)
    assert len(set(res.indices.tolist())) == 5
    # centroid (2, 0): 2 and 3 at distance 3 beat the zeros at 2 -> 2; then 0 (dist 5); then all
    # remaining points are duplicates at distance 0: lowest index first.
    assert res.indices.tolist() == [2, 0, 1, 3, 4]
    assert res.pick_distances[2:].tolist() == [0.0, 0.0, 0.0]
    assert res.stop_reason == "exhausted"


def test_min_distance_zero_terminates_and_selects_each_point_once() -> None:
    x = np.array([[1, 1]] * 6 + [[2, 2]] * 3, dtype=np.float32)
    res = coreset_with_info(x, min_distance=0.0)
    assert sorted(res.indices.tolist()) == list(range(9))
    assert res.stop_reason == "exhausted"
    res = coreset_with_info(x, min_distance=0.0, preselected=[0, 6])
    assert sorted(res.indices.tolist()) == [1, 2, 3, 4, 5, 7, 8]


def test_all_identical_points_with_positive_min_distance_stop_after_first() -> None:
    x = np.ones((10, 4), dtype=np.float32)
    res = coreset_with_info(x, min_distance=0.1)
    assert res.indices.tolist() == [0]
    assert res.stop_reason == "min_distance"


def test_preselected_never_repicked() -> None:
    x = data(48, n=50)
    pre = list(range(0, 50, 3))
    res = coreset(x, n_samples=100, preselected=pre)
    assert not set(res.tolist()) & set(pre)
    assert len(res) == 50 - len(pre)
    assert len(set(res.tolist())) == len(res)
    # duplicate preselected entries are harmless
    assert coreset(x, n_samples=5, preselected=pre + pre).tolist() == res[:5].tolist()


def test_first_pick_with_preselected_is_farthest_from_them() -> None:
    x = data(49)
    pre = [4, 8, 15]
    got = coreset(x, n_samples=1, preselected=np.array(pre))
    mind = dists_to_set(x, pre)
    assert got.tolist() == [int(np.argmax(mind))]


# ----------------------------------------------------------------------------------------------
# weights
# ----------------------------------------------------------------------------------------------


def test_weights_shift_the_pick() -> None:
    # 1-D: preselected 0 at the origin; point 1 at 10, point 2 at 3.
    x = np.array([[0.0], [10.0], [3.0]], dtype=np.float32)
    assert coreset(x, n_samples=1, preselected=[0]).tolist() == [1]
    # weighted: 0.1*10 = 1 < 1*3 = 3 -> point 2
    w = np.array([1.0, 0.1, 1.0])
    assert coreset(x, n_samples=1, preselected=[0], weights=w).tolist() == [2]


def test_weights_scale_distance_not_squared_distance() -> None:
    # w*d: 1*4 = 4 vs 0.6*6 = 3.6 -> point 1; with w*d² it would be 16 vs 21.6 -> point 2
    x = np.array([[0.0], [4.0], [-6.0]], dtype=np.float32)
    w = np.array([1.0, 1.0, 0.6])
    assert coreset(x, n_samples=1, preselected=[0], weights=w).tolist() == [1]


def test_min_distance_uses_raw_distance_with_weights() -> None:
    # point 1 is close (raw 0.5) but heavily weighted; min_distance 1 must exclude it
    x = np.array([[0.0], [0.5], [2.0]], dtype=np.float32)
    w = np.array([1.0, 100.0, 1.0])
    res = coreset_with_info(x, min_distance=1.0, preselected=[0], weights=w)
    assert res.indices.tolist() == [2]
    assert res.stop_reason == "min_distance"
    # without min_distance the heavy close point wins
    assert coreset(x, n_samples=1, preselected=[0], weights=w).tolist() == [1]


def test_all_zero_weights_pick_each_point_once_in_index_order() -> None:
    x = data(51, n=6)
    res = coreset_with_info(x, n_samples=10, weights=np.zeros(6))
    assert res.indices.tolist() == [0, 1, 2, 3, 4, 5]
    assert res.stop_reason == "exhausted"


def test_zero_weights_are_still_selectable_last() -> None:
    x = np.array([[0.0], [1.0], [5.0], [2.0]], dtype=np.float32)
    w = np.array([1.0, 1.0, 0.0, 1.0])
    res = coreset_with_info(x, n_samples=10, preselected=[0], weights=w)
    assert res.indices.tolist() == [3, 1, 2]
    assert res.stop_reason == "exhausted"


# ----------------------------------------------------------------------------------------------
# edge cases
# ----------------------------------------------------------------------------------------------


def test_zero_rows_gives_empty_result() -> None:
    x = np.zeros((0, 8), dtype=np.float32)
    res = coreset_with_info(x, n_samples=5)
    assert res.indices.shape == (0,)
    assert res.indices.dtype == np.int64
    assert res.stop_reason == "exhausted"
    assert coreset(x, min_distance=1.0).size == 0
    r = random_selection(0, 5, seed=0)
    assert r.indices.size == 0


def test_one_row() -> None:
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    res = coreset_with_info(x, n_samples=3)
    assert res.indices.tolist() == [0]
    assert res.stop_reason == "exhausted"
    assert coreset(x, min_distance=10.0).tolist() == [0]
    assert coreset(x, n_samples=3, preselected=[0]).size == 0


def test_float64_and_non_contiguous_input() -> None:
    x = data(50).astype(np.float64)
    a = coreset(x, n_samples=15)
    b = coreset(np.asfortranarray(x), n_samples=15)
    c = coreset(x.astype(np.float32), n_samples=15)
    assert a.tolist() == b.tolist() == c.tolist()


# ----------------------------------------------------------------------------------------------
# random selection
# ----------------------------------------------------------------------------------------------


def test_random_reproducible_and_seed_dependent() -> None:
    a = random_selection(1000, 50, seed=7)
    b = random_selection(1000, 50, seed=7)
    c = random_selection(1000, 50, seed=8)
    assert isinstance(a, SelectionResult)
    assert a.indices.tolist() == b.indices.tolist()
    assert a.indices.tolist() != c.indices.tolist()
    assert len(set(a.indices.tolist())) == 50
    assert a.stop_reason == "n_samples"
    assert np.isnan(a.pick_distances).all()


def test_random_never_picks_preselected() -> None:
    pre = list(range(0, 100, 2))
    res = random_selection(100, 1000, seed=1, preselected=pre)
    assert sorted(res.indices.tolist()) == list(range(1, 100, 2))
    assert res.stop_reason == "exhausted"


def test_random_weighted_favours_heavy() -> None:
    n = 2000
    w = np.ones(n)
    heavy = np.arange(0, n, 2)
    w[heavy] = 10.0
    res = random_selection(n, 100, seed=3, weights=w)
    frac_heavy = np.isin(res.indices, heavy).mean()
    # expected ≈ 10/11 ≈ 0.91 for a small draw; uniform would give 0.5
    assert frac_heavy > 0.8
    uniform = random_selection(n, 100, seed=3)
    assert np.isin(uniform.indices, heavy).mean() < 0.65
    again = random_selection(n, 100, seed=3, weights=w)
    assert again.indices.tolist() == res.indices.tolist()


def test_random_weighted_zero_weights_only_after_positive() -> None:
    w = np.array([0.0, 1.0, 0.0, 2.0, 0.0])
    res = random_selection(5, 2, seed=0, weights=w)
    assert sorted(res.indices.tolist()) == [1, 3]
    res = random_selection(5, 5, seed=0, weights=w)
    assert sorted(res.indices[:2].tolist()) == [1, 3]
    assert sorted(res.indices.tolist()) == [0, 1, 2, 3, 4]
    # the zero-weight tail is itself in random (seeded) order
    w = np.zeros(50)
    w[0] = 1.0
    tail_a = random_selection(50, 50, seed=0, weights=w).indices[1:].tolist()
    tail_b = random_selection(50, 50, seed=1, weights=w).indices[1:].tolist()
    assert tail_a != sorted(tail_a)
    assert tail_a != tail_b


def test_random_min_distance_guarantee() -> None:
    x = data(60, n=500, d=3)
    md = 1.0
    pre = [0, 1]
    res = random_selection(500, None, seed=4, embeddings=x, min_distance=md, preselected=pre)
    chosen = res.indices.tolist()
    assert not set(chosen) & set(pre)
    d = pairwise(x, chosen)
    assert d[~np.eye(len(chosen), dtype=bool)].min() >= md
    assert (dists_to_set(x, pre)[chosen] >= md).all()
    # maximal: every unselected, non-preselected point was rejected for being too close
    mind = dists_to_set(x, chosen + pre)
    rest = np.setdiff1d(np.arange(500), chosen + pre)
    assert (mind[rest] < md).all()
    assert res.stop_reason == "min_distance"
    assert (res.pick_distances >= md).all()
    again = random_selection(500, None, seed=4, embeddings=x, min_distance=md, preselected=pre)
    assert again.indices.tolist() == chosen


def test_random_min_distance_with_n_samples_stops_at_count() -> None:
    x = data(61, n=500, d=3)
    res = random_selection(500, 5, seed=2, embeddings=x, min_distance=0.5)
    assert len(res.indices) == 5
    assert res.stop_reason == "n_samples"
    assert res.pick_distances[0] == math.inf
    d = pairwise(x, res.indices)
    assert d[~np.eye(5, dtype=bool)].min() >= 0.5


def test_random_min_distance_zero_takes_everything() -> None:
    x = np.ones((6, 2), dtype=np.float32)
    res = random_selection(6, None, seed=0, embeddings=x, min_distance=0.0)
    assert sorted(res.indices.tolist()) == list(range(6))
    assert res.stop_reason == "exhausted"


def test_random_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="stopping condition"):
        random_selection(10, None, seed=0)
    with pytest.raises(ValueError, match="embeddings"):
        random_selection(10, 3, seed=0, min_distance=1.0)
    with pytest.raises(ValueError, match="rows"):
        random_selection(10, 3, seed=0, embeddings=np.zeros((9, 2)), min_distance=1.0)
    with pytest.raises(ValueError):
        random_selection(10, 3, seed=0, weights=np.ones(3))
    with pytest.raises(ValueError):
        random_selection(10, 3, seed=0, preselected=[10])


# ----------------------------------------------------------------------------------------------
# resolve_n_samples / normalize
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cfg", "size", "expected"),
    [
        (-1, 100, None),
        (1, 100, 1),
        (250, 100, 250),
        (np.int64(7), 100, 7),
        (0.5, 100, 50),
        (0.29, 100, 29),  # binary 0.29*100 = 28.999999999999996
        (0.333, 10, 3),
        (1.0, 37, 37),
        (0.001, 10, 1),  # positive fraction of non-empty input is at least 1
        (0.5, 0, 0),
        (0.5, 3, 1),
    ],
)
def test_resolve_n_samples(cfg: int | float, size: int, expected: int | None) -> None:
    assert resolve_n_samples(cfg, size) == expected


@pytest.mark.parametrize("cfg", [True, False, 0, -2, 0.0, -0.5, 1.5, 2.0, float("nan"), "10", None])
def test_resolve_n_samples_rejects(cfg: object) -> None:
    with pytest.raises(ValueError):
        resolve_n_samples(cfg, 100)  # type: ignore[arg-type]


def test_resolve_fraction_feeds_coreset() -> None:
    x = data(70, n=90)
    k = resolve_n_samples(0.1, len(x))
    assert k == 9
    assert len(coreset(x, n_samples=k)) == 9


def test_normalize() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e30, 1e30]], dtype=np.float64)
    y = normalize(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[0], [0.6, 0.8], rtol=1e-6)
    assert (y[1] == 0).all()
    np.testing.assert_allclose(y[2], [math.sqrt(0.5)] * 2, rtol=1e-6)
    assert x[0, 0] == 3.0  # input untouched
    z = normalize(np.random.default_rng(0).standard_normal((50, 7)))
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
    assert normalize(np.zeros((0, 4))).shape == (0, 4)
    with pytest.raises(ValueError):
        normalize(np.zeros(3))


def test_reference_sanity_on_a_line() -> None:
    # the reference itself: on a line, greedy picks the extremes (tie -> lowest index) then the midpoint
    x = np.array([[float(i)] for i in range(9)], dtype=np.float32)
    ref, _, _ = reference_coreset(x, n_samples=3)
    assert ref == [0, 8, 4]
    assert coreset(x, n_samples=3).tolist() == ref


def test_float_duplicates_with_rounding_noise() -> None:
    # large-norm, non-integer rows in d=67: the expanded-norm distance of an exact duplicate rounds to
    # non-zero (often negative) values; clamping keeps min_distance=0 from stopping early, and
    # duplicates of one row compute identically, so they still come out in index order.
    rng = np.random.default_rng(1)
    base = (rng.standard_normal((4, 67)) * 100 + 300).astype(np.float32)
    x = np.repeat(base, 25, axis=0)[rng.permutation(100)]
    res = coreset_with_info(x, min_distance=0.0)
    assert res.stop_reason == "exhausted"
    assert sorted(res.indices.tolist()) == list(range(100))
    assert (res.pick_distances[4:] >= 0).all()
    group = {tuple(r) for r in x[res.indices[:4]].tolist()}
    assert len(group) == 4  # the four distinct rows come first
    for b in base:
        members = [int(i) for i in res.indices[4:] if (x[i] == b).all()]
        assert members == sorted(members)


def test_start_on_many_rows_uses_exact_centroid() -> None:
    # more rows than one centroid block (16384), not a multiple of it, offset from the origin: points
    # on a sphere of radius <= 10 plus one at 10.5 - only a correct centroid makes that one the start
    rng = np.random.default_rng(8)
    n = 40_001
    direction = rng.standard_normal((n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radius = rng.uniform(9.0, 10.0, size=n)
    radius[123] = 10.5
    x = (direction * radius[:, None]).astype(np.float32)
    x -= x.astype(np.float64).mean(axis=0).astype(np.float32)
    x += np.array([50.0, -20.0, 5.0], dtype=np.float32)
    assert coreset(x, n_samples=1).tolist() == [123]


def test_random_weighted_with_min_distance() -> None:
    x = data(62, n=400, d=2)
    w = np.where(x[:, 0] > 0, 50.0, 1.0)  # right half heavy
    res = random_selection(400, 10, seed=5, weights=w, embeddings=x, min_distance=0.3)
    assert len(res.indices) == 10
    d = pairwise(x, res.indices)
    assert d[~np.eye(10, dtype=bool)].min() >= 0.3
    assert (x[res.indices, 0] > 0).mean() >= 0.7


# ----------------------------------------------------------------------------------------------
# the torch steps (CUDA on a GPU machine; here torch on the CPU): the same picks as the reference
# ----------------------------------------------------------------------------------------------

TORCH_DEVICES = ["cpu:0"] + (["cuda"] if __import__("torch").cuda.is_available() else [])


@pytest.mark.parametrize("device", TORCH_DEVICES)
@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_samples": 40},
        {"n_samples": 30, "preselected": [3, 50, 120]},
        {"n_samples": 35, "weights": "w"},
        {"min_distance": 1.6, "weights": "w", "preselected": [7]},
        {"min_distance": 2.2},
        {"n_samples": 400},  # more than there are: exhausted
    ],
)
def test_torch_steps_match_the_reference(device: str, kwargs: dict) -> None:
    x = data(21)
    kw = dict(kwargs)
    if kw.get("weights") == "w":
        kw["weights"] = np.random.default_rng(5).uniform(0.1, 1.0, len(x))
    res = coreset_with_info(x, device=device, **kw)
    ref, ref_d, reason = reference_coreset(x, **kw)
    assert res.indices.tolist() == ref and res.stop_reason == reason
    np.testing.assert_allclose(res.pick_distances, ref_d, rtol=1e-4, atol=1e-4)
    assert res.indices.tolist() == coreset_with_info(x, **kw).indices.tolist()  # == the numpy steps


def test_torch_steps_with_a_datapool_of_external_points() -> None:
    x = data(22)
    pool = data(23, n=50)
    a = coreset_with_info(x, n_samples=25, preselected_embeddings=pool)
    b = coreset_with_info(x, n_samples=25, preselected_embeddings=pool, device="cpu:0")
    assert a.indices.tolist() == b.indices.tolist()
    np.testing.assert_allclose(a.pick_distances, b.pick_distances, rtol=1e-5)


def test_select_device_choice(monkeypatch) -> None:
    import torch

    from kurate.selection.coreset import GPU_MIN_VALUES, select_device

    assert select_device(10, 8, "auto") == "cpu"  # too small to gain
    assert select_device(10, 8, "cuda") == "cuda" and select_device(10**9, 8, "cpu") == "cpu"
    with pytest.raises(ValueError, match="allowed: auto, cpu, cuda"):
        select_device(10, 8, "gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device(GPU_MIN_VALUES, 1, "auto") == "cpu"  # no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (80 << 30, 80 << 30))
    assert select_device(GPU_MIN_VALUES, 1, "auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (1 << 20, 80 << 30))
    assert select_device(GPU_MIN_VALUES, 1, "auto") == "cpu"  # does not fit
