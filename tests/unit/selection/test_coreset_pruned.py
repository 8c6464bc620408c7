"""The exact pruned greedy: the same picks as the plain step, whichever step the run chooses."""

from __future__ import annotations

import numpy as np
import pytest

from kurate.selection import coreset


def _clustered(n: int, d: int, clusters: int, spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d), dtype=np.float32) * 4
    return centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, d), dtype=np.float32) * spread


DATA = {
    "clustered d=64": lambda: _clustered(6000, 64, 80, 0.3, 0),
    "near duplicates d=16": lambda: _clustered(5000, 16, 400, 0.01, 1),
    "exact duplicates": lambda: _clustered(3000, 8, 900, 0.0, 2),
    "unclustered d=8": lambda: np.random.default_rng(3).standard_normal((4000, 8), dtype=np.float32),
    "unit norm d=32": lambda: coreset.normalize(_clustered(5000, 32, 60, 0.5, 4)),
}


def _same_up_to_exact_ties(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Equal picks, except where two candidates are the same vector (a tie down to the last bit)."""
    assert len(a) == len(b)
    differ = np.flatnonzero(a != b)
    assert all(np.array_equal(x[a[i]], x[b[i]]) for i in differ), differ[:5]


def _run(monkeypatch, mode: str, x: np.ndarray, **kw) -> coreset.SelectionResult:
    monkeypatch.setenv(coreset.PRUNE_ENV, mode)
    return coreset.coreset_with_info(x, **kw)


@pytest.mark.parametrize("data", list(DATA))
@pytest.mark.parametrize(
    "stop", [{"n_samples": 700}, {"min_distance": 1.0}, {"n_samples": 400, "min_distance": 0.05}]
)
def test_pruned_steps_pick_what_plain_steps_pick(monkeypatch, data, stop):
    """Same picks up to float ties: where two candidates' float32 distances agree to the last bits
    (exact duplicates; thousands of picks deep into an exhaustive run), either may come first."""
    x = DATA[data]()
    plain = _run(monkeypatch, "off", x, **stop)
    pruned = _run(monkeypatch, "on", x, **stop)
    assert plain.pruned_steps == 0
    assert pruned.pruned_steps >= len(pruned.indices) - 2  # every fold-in after the first was pruned
    assert pruned.stop_reason == plain.stop_reason
    np.testing.assert_allclose(pruned.pick_distances, plain.pick_distances, rtol=1e-4, atol=1e-4)
    if "n_samples" in stop and stop.get("min_distance", 0) < 0.1:  # no near ties among the first picks
        _same_up_to_exact_ties(x, pruned.indices, plain.indices)
    if pruned.stop_reason == "exhausted":
        assert set(pruned.indices) == set(plain.indices)


def test_auto_switches_by_timing_and_keeps_the_picks(monkeypatch):
    """auto: trial windows of pruned steps (kept or handed back by timing); the picks never change."""
    monkeypatch.setattr(coreset, "PRUNE_MIN_VALUES", 0)
    monkeypatch.setattr(coreset, "PRUNE_MIN_PICKS", 100)
    x = _clustered(8000, 32, 100, 0.2, 5)
    plain = _run(monkeypatch, "off", x, n_samples=600)
    auto = _run(monkeypatch, "auto", x, n_samples=600)
    assert auto.pruned_steps > 0  # the trial ran
    np.testing.assert_array_equal(auto.indices, plain.indices)


def test_auto_leaves_small_runs_and_other_modes_alone(monkeypatch):
    x = _clustered(3000, 16, 40, 0.2, 6)
    assert _run(monkeypatch, "auto", x, n_samples=50).pruned_steps == 0  # small k: plain steps only
    w = np.linspace(0.5, 1.0, len(x))
    weighted = _run(monkeypatch, "on", x, n_samples=300, weights=w)
    assert weighted.pruned_steps == 0  # weighted scores: the plain step
    pre = _run(monkeypatch, "on", x, n_samples=300, preselected=[0, 5])
    assert pre.pruned_steps == 0
    with pytest.raises(ValueError, match=coreset.PRUNE_ENV):
        _run(monkeypatch, "sometimes", x, n_samples=3)


def test_policy_hands_back_when_pruning_does_not_pay():
    policy = coreset._PrunePolicy("auto")
    switched = [policy.record(1.0, k) for k in range(1, coreset.PRUNE_TRIAL_AT + 1)]
    assert switched[-1] and not any(switched[:-1])  # the trial starts at PRUNE_TRIAL_AT
    for k in range(policy.WINDOW):
        policy.record(3.0, coreset.PRUNE_TRIAL_AT + 1 + k)  # slower than the plain steps
    assert not policy.pruned and policy.next_trial > coreset.PRUNE_TRIAL_AT + policy.WINDOW
    assert not policy.abandoned
    k = policy.next_trial
    for _ in range(policy.WINDOW):  # the second trial does not pay either: it gives up for good
        policy.record(1.0, k)
        k += 1
    assert policy.pruned
    for _ in range(policy.WINDOW):
        policy.record(3.0, k)
        k += 1
    assert policy.abandoned and not policy.pruned
    fast = coreset._PrunePolicy("auto")
    for k in range(1, coreset.PRUNE_TRIAL_AT + 1):
        fast.record(1.0, k)
    for k in range(fast.WINDOW):
        fast.record(0.2, coreset.PRUNE_TRIAL_AT + 1 + k)
    assert fast.pruned  # it pays: it stays
