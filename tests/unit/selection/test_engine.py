"""The combined greedy: hand-computed small cases and properties of every strategy."""

from __future__ import annotations

import numpy as np
import pytest

from kurate.selection import coreset as cs
from kurate.selection import engine as en
from kurate.selection import knn
from kurate.selection import spec as sp


def _entries(*pairs, n=None):
    cfg = {"strategies": [{"input": i, "strategy": s} for i, s in pairs]}
    if n is not None:
        cfg["n_samples"] = n
    else:
        cfg["proportion_samples"] = 1.0
    return sp.parse(cfg).entries


EMB = {"type": "EMBEDDINGS"}
QUERY = {"type": "EMBEDDINGS", "dataset_id": "q.csv"}


def meta(key="k"):
    return {"type": "METADATA", "key": key}


def test_weights_alone_orders_by_value_ties_to_the_lowest_index():
    (e,) = _entries((meta(), {"type": "WEIGHTS"}), n=4)
    v = np.array([0.5, 2.0, 0.5, np.nan, 3.0, 2.0])
    out = en.select(np.zeros((6, 2), np.float32), [en.Factor(e, values=v)], 4)
    assert out.indices.tolist() == [4, 1, 5, 0]
    (neg,) = _entries((meta(), {"type": "WEIGHTS", "strength": -1}), n=3)
    out = en.select(np.zeros((6, 2), np.float32), [en.Factor(neg, values=v)], 3)
    assert out.indices.tolist() == [3, 0, 2]  # missing = 0: the lowest value is preferred first


def test_lightlys_worked_example_of_strength():
    """docs.lightly.ai selection-strategy-combination: diversity 1/0.8/0.5 x active learning 0.3/0.8/1.0."""
    x = np.array([[1.0], [0.8], [0.5]], dtype=np.float32)  # distances to the datapool point at 0
    pool = np.zeros((1, 1), dtype=np.float32)
    al = np.array([0.3, 0.8, 1.0])
    div, w = _entries((EMB, {"type": "DIVERSITY"}), (meta(), {"type": "WEIGHTS"}), n=1)
    out = en.select(x, [en.Factor(div), en.Factor(w, values=al)], 1, pool=pool)
    assert out.indices.tolist() == [1]  # 0.3, 0.64, 0.5
    div3, w = _entries((EMB, {"type": "DIVERSITY", "strength": 5}), (meta(), {"type": "WEIGHTS"}), n=1)
    out = en.select(x, [en.Factor(div3), en.Factor(w, values=al)], 1, pool=pool)
    assert out.indices.tolist() == [0]  # 1 x 0.3 beats 0.8^5 x 0.8 = 0.262 and 0.5^5 x 1


def test_diversity_alone_is_the_coreset_and_min_distance_stops_it():
    x = np.random.default_rng(0).standard_normal((300, 6)).astype(np.float32)
    (e,) = _entries((EMB, {"type": "DIVERSITY"}), n=25)
    out = en.select(x, [en.Factor(e)], 25)
    np.testing.assert_array_equal(out.indices, cs.coreset(x, 25))
    (md,) = _entries((EMB, {"type": "DIVERSITY", "stopping_condition_minimum_distance": 2.5}))
    out = en.select(x, [en.Factor(md)], None)
    ref = cs.coreset_with_info(x, min_distance=2.5)
    np.testing.assert_array_equal(out.indices, ref.indices)
    assert out.stop_reason == "min_distance"


@pytest.mark.parametrize("seed", range(5))
def test_threshold_never_lets_a_failing_sample_through(seed):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=500)
    v[rng.integers(0, 500, 20)] = np.nan
    u = rng.random(500)
    t1, t2, d = _entries(
        (meta("a"), {"type": "THRESHOLD", "threshold": -0.2, "operation": "BIGGER_EQUAL"}),
        (meta("b"), {"type": "THRESHOLD", "threshold": 0.7, "operation": "SMALLER"}),
        (EMB, {"type": "DIVERSITY"}),
        n=400,
    )
    x = rng.standard_normal((500, 4)).astype(np.float32)
    out = en.select(x, [en.Factor(t1, values=v), en.Factor(t2, values=u), en.Factor(d)], 400)
    ok = (v >= -0.2) & (u < 0.7)
    assert ok[out.indices].all()
    assert len(out.indices) == ok.sum() == out.candidates  # everything that passes, nothing else
    assert out.details[0]["removed"] == int((~(v >= -0.2)).sum())
    assert out.details[1]["removed"] == int(((v >= -0.2) & ~(u < 0.7)).sum())


@pytest.mark.parametrize("seed", range(4))
def test_balance_reaches_the_target_when_the_pool_allows_it(seed):
    rng = np.random.default_rng(seed)
    labels = rng.choice(4, size=1000, p=[0.6, 0.25, 0.1, 0.05])
    mass = np.eye(4, dtype=np.float32)[labels]
    target = {"a": 0.4, "b": 0.3, "c": 0.2}  # d is "other" with 0.1
    (e,) = _entries((meta(), {"type": "BALANCE", "target": target}), n=200)
    out = en.select(np.zeros((1000, 2), np.float32), [en.Factor(e, classes=list("abcd"), mass=mass)], 200)
    counts = np.bincount(labels[out.indices], minlength=4)
    np.testing.assert_allclose(counts, [80, 60, 40, 20], atol=1)
    (u,) = _entries((meta(), {"type": "BALANCE", "distribution": "UNIFORM"}), n=160)
    out = en.select(np.zeros((1000, 2), np.float32), [en.Factor(u, classes=list("abcd"), mass=mass)], 160)
    counts = np.bincount(labels[out.indices], minlength=4)
    avail = np.bincount(labels, minlength=4)
    assert (counts == np.minimum(40, avail)).all() or counts.min() == avail.min()


def test_balance_counts_the_datapool_and_stops_preferring_a_full_class():
    labels = np.array([0] * 10 + [1] * 10)
    mass = np.eye(2, dtype=np.float32)[labels]
    (e,) = _entries((meta(), {"type": "BALANCE", "target": {"a": 0.5, "b": 0.5}}), n=4)
    f = en.Factor(e, classes=["a", "b"], mass=mass, pool_mass=np.array([4.0, 0.0]))
    out = en.select(np.zeros((20, 2), np.float32), [f], 4)
    assert labels[out.indices].tolist() == [1, 1, 1, 1]  # the datapool holds 4 of class a already
    assert out.details[0]["share_selected"][:2] == [0.5, 0.5]


def test_balance_with_diversity_keeps_both():
    rng = np.random.default_rng(1)
    labels = rng.choice(2, size=400, p=[0.9, 0.1])
    x = rng.standard_normal((400, 5)).astype(np.float32)
    mass = np.eye(2, dtype=np.float32)[labels]
    d, b = _entries(
        (EMB, {"type": "DIVERSITY"}),
        (meta(), {"type": "BALANCE", "target": {"a": 0.5, "b": 0.5}, "strength": 50}),
        n=40,
    )
    out = en.select(x, [en.Factor(d), en.Factor(b, classes=["a", "b"], mass=mass)], 40)
    counts = np.bincount(labels[out.indices], minlength=2)
    assert abs(counts[0] - counts[1]) <= 2  # balanced although class a is 90% of the input
    plain = cs.coreset(x, 40)
    assert np.bincount(labels[plain], minlength=2)[1] < 15  # diversity alone follows the input


def test_similarity_picks_the_true_nearest():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((700, 8)).astype(np.float32)
    q = rng.standard_normal((5, 8)).astype(np.float32)
    d = knn.nearest_query_distance(x, q)
    brute = np.sqrt(((x[:, None, :].astype(np.float64) - q[None]) ** 2).sum(-1)).min(axis=1)
    np.testing.assert_allclose(d, brute, rtol=1e-5, atol=1e-5)
    (e,) = _entries((QUERY, {"type": "SIMILARITY"}), n=30)
    out = en.select(x, [en.Factor(e, values=d)], 30)
    assert set(out.indices.tolist()) == set(np.argsort(brute, kind="stable")[:30].tolist())


def test_knn_mean_distance_is_exact_across_blocks(monkeypatch):
    monkeypatch.setattr(knn, "_ROWS", 64)
    monkeypatch.setattr(knn, "_COLS", 96)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((500, 6)).astype(np.float32)
    x[10] = x[11] = x[12]  # exact copies are neighbours (distance 0), never themselves
    d = np.sqrt(((x[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    for k in (1, 7, 20):
        np.testing.assert_allclose(knn.knn_mean_distance(x, k), np.sort(d, axis=1)[:, :k].mean(1), atol=2e-5)
    torch = pytest.importorskip("torch")
    assert torch is not None
    np.testing.assert_allclose(
        knn.knn_mean_distance(x, 7, "cpu:0"), np.sort(d, axis=1)[:, :7].mean(1), atol=2e-5
    )


def test_typicality_prefers_dense_regions_and_its_minimum_filters():
    rng = np.random.default_rng(5)
    dense = rng.normal(0, 0.05, size=(50, 2))
    sparse = rng.normal(0, 3.0, size=(50, 2))
    x = np.vstack([sparse, dense]).astype(np.float32)
    t = knn.typicality(x, 5)
    assert t.max() == pytest.approx(1.0) and (t > 0).all()
    (e,) = _entries((EMB, {"type": "TYPICALITY", "num_nearest_neighbors": 5}), n=30)
    out = en.select(x, [en.Factor(e, values=t)], 30)
    assert (out.indices >= 50).all()  # the dense cluster first
    (m,) = _entries(
        (
            EMB,
            {"type": "TYPICALITY", "num_nearest_neighbors": 5, "stopping_condition_minimum_typicality": 0.5},
        ),
        n=100,
    )
    out = en.select(x, [en.Factor(m, values=t)], 100)
    assert (t[out.indices] >= 0.5).all() and len(out.indices) == int((t >= 0.5).sum())


def test_max_sum_stops_before_the_sum_would_exceed_it():
    (e,) = _entries((meta(), {"type": "WEIGHTS", "stopping_condition_max_sum": 10}), n=10)
    v = np.array([4.0, 3.0, 5.0, 1.0, 2.0])
    out = en.select(np.zeros((5, 2), np.float32), [en.Factor(e, values=v)], 10)
    assert out.indices.tolist() == [2, 0] and out.stop_reason == "max_sum"  # 5 + 4; + 3 would be 12


def test_random_input_is_seeded():
    (e,) = _entries(({"type": "RANDOM", "random_seed": 7}, {"type": "WEIGHTS"}), n=5)
    v = np.random.default_rng(7).random(50)
    a = en.select(np.zeros((50, 2), np.float32), [en.Factor(e, values=v)], 5)
    np.testing.assert_array_equal(a.indices, np.argsort(-v, kind="stable")[:5])


def test_typicality_by_hand():
    x = np.array([[0.0], [1.0], [2.0], [10.0]], dtype=np.float32)
    # K=1: nearest-neighbour distances 1, 1, 1, 8 -> typicality 1/d scaled to max 1 (eps is 1e-6 of the mean)
    np.testing.assert_allclose(knn.knn_mean_distance(x, 1), [1, 1, 1, 8])
    np.testing.assert_allclose(knn.typicality(x, 1), [1, 1, 1, 1 / 8], rtol=1e-5)
    # K=2: means (1+2)/2, (1+1)/2, (1+2)/2, (8+9)/2 -> 1/1.5, 1, 1/1.5, 1/8.5 scaled by 1
    np.testing.assert_allclose(knn.typicality(x, 2), [1 / 1.5, 1, 1 / 1.5, 1 / 8.5], rtol=1e-5)


def test_without_a_budget_or_a_stopping_condition_everything_passing_is_selected():
    x = np.random.default_rng(9).standard_normal((40, 3)).astype(np.float32)
    d, t = _entries(
        (EMB, {"type": "DIVERSITY"}),
        (meta(), {"type": "THRESHOLD", "threshold": 0, "operation": "BIGGER"}),
        n=1,
    )  # n only to pass validation; the engine gets None
    v = x[:, 0].astype(np.float64)
    out = en.select(x, [en.Factor(d), en.Factor(t, values=v)], None)
    assert sorted(out.indices.tolist()) == np.flatnonzero(v > 0).tolist() and out.stop_reason == "exhausted"
