"""The combined greedy of ``selection_config``: thresholds, then every other strategy at once.

Each strategy turns its input into a per-sample factor ``f_s(i) >= 0`` with a strength ``a_s``; the
next pick maximises the overall score ``S(i) = prod_s f_s(i)^a_s`` (Lightly's selection-strategy
combination), computed as ``log S = sum_s a_s log f_s`` so that any strength in [-1e9, 1e9] stays finite:

- THRESHOLD entries first remove every sample whose value fails ``value OP threshold`` (a missing value
  fails), in config order; they take no part in the score. TYPICALITY's
  ``stopping_condition_minimum_typicality`` removes samples below it the same way.
- constant factors: WEIGHTS (the input value, shifted to start at 0 when negatives occur), SIMILARITY
  ``1 / (1 + distance to the nearest query)``, TYPICALITY (kNN density scaled to max 1);
- DIVERSITY: the distance to the selected set (datapool and earlier picks; before the first pick with no
  datapool: the distance to the centroid), recomputed after every pick;
- BALANCE: ``sum_c p̂_c t_c / s'_c`` with the selected class mass ``m`` (datapool included),
  ``s'_c = (m_c + t_c) / (M + 1)``: 1 while the selection is on target, above 1 for samples of classes
  that fall short of it; recomputed after every pick.

A positive scale of any factor never changes the argmax, so no normalisation is needed for the order.
A zero factor with a positive strength puts the sample after every positive score (its log is floored
at ``-1e300``, below any real score, above a selected sample). Ties go to the lowest index.
``stopping_condition_minimum_distance`` (DIVERSITY) is an eligibility limit on the raw distance, as
``min_distance`` is for the coreset; ``stopping_condition_max_sum`` (WEIGHTS) stops before the picked
values' sum would exceed it.

With DIVERSITY and constant factors only, the picks are the coreset's own
(:func:`kurate.selection.coreset.coreset_with_info` with weights ``exp(log W / a_div)``), GPU path
included; BALANCE runs this module's loop (numpy, one GEMV over the embeddings and one over the class
matrix per pick: the coreset's memory plus N×C). Without DIVERSITY and BALANCE the order is a stable
sort of the score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kurate.selection import coreset as cs
from kurate.selection.spec import Entry

FLOOR = -1e300  # log of a zero factor: below every real score, above a selected sample (-inf)
StopReason = str


@dataclass
class Factor:
    """One strategy's resolved input (aligned with the candidate rows)."""

    entry: Entry
    #: (N,) numbers: WEIGHTS/THRESHOLD values, SIMILARITY distances, TYPICALITY values; NaN = missing.
    values: np.ndarray | None = None
    #: BALANCE: class names, the (N, C) class mass (float32) and the datapool's class mass (C,).
    classes: list[str] = field(default_factory=list)
    mass: np.ndarray | None = None
    pool_mass: np.ndarray | None = None


@dataclass
class Outcome:
    """What the engine picked and why it stopped, with figures for the report."""

    indices: np.ndarray
    pick_distances: np.ndarray
    stop_reason: StopReason
    candidates: int
    details: list[dict[str, Any]]
    device: str = "cpu"


def passes(values: np.ndarray, operation: str, threshold: float) -> np.ndarray:
    """Which values satisfy ``value OP threshold`` (NaN never does)."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        if operation == "BIGGER":
            out = v > threshold
        elif operation == "BIGGER_EQUAL":
            out = v >= threshold
        elif operation == "SMALLER":
            out = v < threshold
        elif operation == "SMALLER_EQUAL":
            out = v <= threshold
        else:
            raise ValueError(f"unknown operation {operation!r}")
    return out & ~np.isnan(v)


def constant_factor(f: Factor) -> np.ndarray:
    """The factor ``f_s(i) >= 0`` of a constant strategy (WEIGHTS, SIMILARITY, TYPICALITY)."""
    t = f.entry.strategy.type
    assert f.values is not None
    v = np.asarray(f.values, dtype=np.float64)
    if t == "SIMILARITY":
        return 1.0 / (1.0 + v)
    if t == "TYPICALITY":
        return np.nan_to_num(v, nan=0.0)
    v = np.nan_to_num(v, nan=0.0)  # WEIGHTS: a missing value weighs nothing
    if v.size and v.min() < 0:
        v = v - v.min()
    return v


def log_factor(factor: np.ndarray, strength: float) -> np.ndarray:
    """``strength * log(factor)``, floored: zero factors give FLOOR (positive strength) or are preferred."""
    f = np.asarray(factor, dtype=np.float64)
    if strength == 0:
        return np.zeros_like(f)
    out = np.full(f.shape, FLOOR)
    pos = f > 0
    out[pos] = strength * np.log(f[pos])
    if strength < 0:  # 0 ^ negative: the most preferred; above every finite score
        out[~pos] = -FLOOR / 2
    return np.maximum(out, FLOOR)


def select(
    x: np.ndarray,
    factors: list[Factor],
    n_samples: int | None,
    pool: np.ndarray | None = None,
    device: str = "cpu",
) -> Outcome:
    """Run the strategies of ``factors`` (one per entry, config order) on the embeddings ``x``.

    ``x``: (N, d) float32, already normalised when the run normalises; ``pool``: the datapool's
    embeddings (already selected; not candidates). Returns indices into ``x``.
    """
    n = x.shape[0]
    details: list[dict[str, Any]] = [{"entry": f.entry.index, "label": f.entry.label} for f in factors]
    mask = np.ones(n, dtype=np.bool_)
    for f, det in zip(factors, details, strict=True):
        st = f.entry.strategy
        if st.type == "THRESHOLD":
            assert f.values is not None and st.threshold is not None
            ok = passes(f.values, st.operation, st.threshold)
            det.update(removed=int((mask & ~ok).sum()), missing=int(np.isnan(f.values).sum()))
            mask &= ok
        elif st.type == "TYPICALITY" and st.min_typicality is not None:
            assert f.values is not None
            ok = np.nan_to_num(f.values, nan=0.0) >= st.min_typicality
            det.update(removed=int((mask & ~ok).sum()))
            mask &= ok
    cand = np.flatnonzero(mask)
    scoring = [f for f in factors if f.entry.strategy.type != "THRESHOLD"]
    log_w = np.zeros(len(cand))
    for f in scoring:
        if f.entry.strategy.type in ("WEIGHTS", "SIMILARITY", "TYPICALITY"):
            log_w += log_factor(constant_factor(f)[cand], f.entry.strategy.strength)
    log_w = np.maximum(log_w, FLOOR)
    diversity = [f for f in scoring if f.entry.strategy.type == "DIVERSITY"]
    balances = [f for f in scoring if f.entry.strategy.type == "BALANCE"]
    a_div = float(sum(f.entry.strategy.strength for f in diversity))
    mds = [f.entry.strategy.min_distance for f in diversity if f.entry.strategy.min_distance is not None]
    min_distance = max(mds) if mds else None
    max_sums = [
        f for f in scoring if f.entry.strategy.type == "WEIGHTS" and f.entry.strategy.max_sum is not None
    ]
    want = None if n_samples is None else min(n_samples, len(cand))
    used_device = "cpu"

    if len(cand) == 0 or want == 0:
        picks, dists, reason = (
            np.empty(0, np.int64),
            np.empty(0),
            "exhausted" if len(cand) == 0 else "n_samples",
        )
    elif want is None and min_distance is None and not max_sums:
        # No budget and no stopping condition: every candidate is selected (Lightly's complete run), in
        # score order; no greedy pass is needed for that.
        picks = np.argsort(-log_w, kind="stable")
        dists, reason = np.full(len(picks), np.nan), "exhausted"
    elif balances or (diversity and a_div == 0):
        xs = x if len(cand) == n else x[cand]  # a copy only when thresholds removed samples
        picks, dists, reason = _greedy(xs, log_w, a_div, min_distance, balances, cand, want, pool)
    elif diversity:
        xs = x if len(cand) == n else x[cand]
        weights: np.ndarray | None = np.exp((log_w - float(log_w.max())) / a_div)
        if weights is not None and np.all(weights == 1.0):
            weights = None
        if want is None and min_distance is None:
            want = len(cand)
        used_device = device
        res = cs.coreset_with_info(
            xs,
            n_samples=want,
            min_distance=min_distance,
            weights=weights,
            preselected_embeddings=pool,
            device=device,
        )
        picks, dists, reason = res.indices, res.pick_distances, res.stop_reason
    else:
        order = np.argsort(-log_w, kind="stable")
        picks = order if want is None else order[:want]
        dists = np.full(len(picks), np.nan)
        reason = "exhausted" if len(picks) == len(cand) else "n_samples"
    picks = np.asarray(picks, dtype=np.int64)
    for f in max_sums:
        assert f.values is not None and f.entry.strategy.max_sum is not None
        vals = np.nan_to_num(np.asarray(f.values, dtype=np.float64)[cand[picks]], nan=0.0)
        over = np.flatnonzero(np.cumsum(vals) > f.entry.strategy.max_sum + 1e-12)
        if over.size:
            picks, dists, reason = picks[: over[0]], dists[: over[0]], "max_sum"
    chosen = cand[picks]
    for f, det in zip(factors, details, strict=True):
        det.update(_figures(f, mask, chosen))
    return Outcome(chosen, np.asarray(dists, dtype=np.float64), reason, len(cand), details, used_device)


def _greedy(
    x: np.ndarray,
    log_w: np.ndarray,
    a_div: float,
    min_distance: float | None,
    balances: list[Factor],
    cand: np.ndarray,
    want: int | None,
    pool: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, StopReason]:
    """The step-by-step greedy (BALANCE, with or without DIVERSITY): one pick per iteration."""
    n = x.shape[0]
    selected = np.zeros(n, dtype=np.bool_)
    # balance state: normalised rows (zero rows stay zero), raw mass, running mass, targets
    states = []
    for f in balances:
        _names, full, pool_mass, targ = balance_columns(f, cand)
        raw = full if len(cand) == len(full) else full[cand]
        tot = raw.sum(axis=1, keepdims=True)
        nothas = tot[:, 0] <= 0
        if np.all((tot == 0) | (tot == 1)):
            phat = raw  # one class per sample (categorical metadata): already normalised, no copy
        else:
            phat = np.divide(raw, tot, out=np.zeros_like(raw), where=tot > 0)
        del tot
        states.append((raw, phat, nothas, targ, pool_mass.copy(), f.entry.strategy.strength))
    thr = None if min_distance is None else min_distance * min_distance
    mind: np.ndarray | None = None
    buf: np.ndarray | None = None
    zeros: np.ndarray | None = None
    sq: np.ndarray | None = None
    first_free = False
    if a_div > 0 or thr is not None:
        sq = cs._row_sq_norms(x)
        zeros = np.zeros(n, dtype=np.float32)
        mind = np.empty(n, dtype=np.float32)
        buf = np.empty(n, dtype=np.float32)
        ext = cs._as_external(pool, x.shape[1])
        if ext is not None:
            mind.fill(np.inf)
            cs._min_sq_dist_to_external(x, sq, ext, mind)
            first_free = False
        else:
            c = cs._centroid(x)
            cs._sq_dist_to_vector(
                x, sq, c, float(np.dot(c.astype(np.float64), c.astype(np.float64))), mind, zeros
            )
            first_free = True
    picks: list[int] = []
    dists: list[float] = []
    limit = n if want is None else want
    score = np.empty(n, dtype=np.float64)
    tmp = np.empty(n, dtype=np.float64)
    fac = np.empty(n, dtype=np.float32)
    reason: StopReason = "n_samples"
    with np.errstate(divide="ignore"):  # log 0 = -inf, floored to FLOOR
        while True:
            if len(picks) >= limit:
                reason = "n_samples" if want is not None else "exhausted"
                break
            if len(picks) == n:
                reason = "exhausted"
                break
            # score = log W + a_div log d + sum_b a_b log f_b, in preallocated buffers (no N-sized copies)
            np.copyto(score, log_w)
            if mind is not None and a_div > 0:
                np.log(mind, out=tmp)  # log d² (-inf at 0: floored below)
                tmp *= 0.5 * a_div
                score += tmp
            for _raw, phat, nothas, targ, mass, strength in states:
                if strength == 0:
                    continue
                share = (mass + targ) / (float(mass.sum()) + 1.0)
                ratio = np.divide(targ, share, out=np.zeros_like(targ), where=share > 0).astype(np.float32)
                np.dot(phat, ratio, out=fac)
                np.log(fac, out=tmp)
                tmp *= strength
                np.putmask(tmp, nothas, 0.0)  # no class mass: a neutral factor 1
                score += tmp
            np.maximum(score, FLOOR, out=score)
            score[selected] = -np.inf
            if thr is not None and mind is not None and not first_free:
                score[mind < thr] = -np.inf
            i = int(np.argmax(score))
            if score[i] == -np.inf:
                reason = "min_distance" if thr is not None else "exhausted"
                break
            selected[i] = True
            picks.append(i)
            if mind is not None:
                assert sq is not None and buf is not None and zeros is not None
                dists.append(math.inf if first_free else math.sqrt(max(float(mind[i]), 0.0)))
                if first_free:
                    mind.fill(np.inf)
                    first_free = False
                cs._sq_dist_to_vector(x, sq, x[i], float(sq[i]), buf, zeros)
                np.minimum(mind, buf, out=mind)
            else:
                dists.append(math.nan)
            for raw, _phat, _has, _targ, mass, _strength in states:
                mass += raw[i]
    return np.asarray(picks, dtype=np.int64), np.asarray(dists, dtype=np.float64), reason


OTHER = "(other classes)"


def balance_columns(f: Factor, cand: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """``(class names, (N, C') mass, pool mass (C',), target shares (C',))`` of a BALANCE factor.

    TARGET: the named classes, plus one column ``OTHER`` holding every other class's mass with the
    target share left over (1 - sum of the named shares), so unnamed classes are balanced as one group.
    UNIFORM: every class present among the candidates or the datapool, equal shares. INPUT: the shares
    of the candidates' class mass.
    """
    assert f.mass is not None
    st = f.entry.strategy
    mass = np.asarray(f.mass, dtype=np.float32)
    pool = np.zeros(mass.shape[1]) if f.pool_mass is None else np.asarray(f.pool_mass, dtype=np.float64)
    sums = mass.sum(axis=0) if len(cand) == len(mass) else mass[cand].sum(axis=0)
    if st.distribution == "UNIFORM":
        present = (sums > 0) | (pool > 0)
        return list(f.classes), mass, pool, present / max(int(present.sum()), 1)
    if st.distribution == "INPUT":
        tot = sums.astype(np.float64)
        c = mass.shape[1]
        return list(f.classes), mass, pool, tot / tot.sum() if tot.sum() > 0 else np.full(c, 1.0 / max(c, 1))
    index = {name: j for j, name in enumerate(f.classes)}
    named = [(name, share) for name, share in st.target]
    cols = [index.get(name, -1) for name, _ in named]
    rest = np.ones(mass.shape[1], dtype=np.bool_)
    for j in cols:
        if j >= 0:
            rest[j] = False
    out = np.zeros((mass.shape[0], len(named) + 1), dtype=np.float32)
    pool_out = np.zeros(len(named) + 1)
    for k, j in enumerate(cols):
        if j >= 0:
            out[:, k] = mass[:, j]
            pool_out[k] = pool[j]
    out[:, -1] = mass[:, rest].sum(axis=1)
    pool_out[-1] = pool[rest].sum()
    targ = np.array([share for _, share in named] + [max(0.0, 1.0 - sum(s for _, s in named))])
    return [name for name, _ in named] + [OTHER], out, pool_out, targ


def _figures(f: Factor, mask: np.ndarray, chosen: np.ndarray) -> dict[str, Any]:
    """Report figures of one strategy: its values over the input vs the selection."""
    st = f.entry.strategy
    out: dict[str, Any] = {"strategy": st.type, "input": f.entry.input.type, "strength": st.strength}
    if f.values is not None:
        v = np.asarray(f.values, dtype=np.float64)
        out["values"] = {"input": _stats(v), "candidates": _stats(v[mask]), "selected": _stats(v[chosen])}
    if f.mass is not None:
        names, cols, pool, targ = balance_columns(f, np.flatnonzero(mask))
        # float64 sums without a float64 copy of the (N, C) matrix
        before = (cols if mask.all() else cols[mask]).sum(axis=0, dtype=np.float64)
        after = cols[chosen].sum(axis=0, dtype=np.float64)
        out["classes"] = names
        out["share_datapool"] = _share(pool)
        out["share_input"] = _share(before)
        out["share_selected"] = _share(after + pool)
        out["target"] = [float(v) for v in targ]
        out["count_selected"] = [float(v) for v in after]
    return out


def _share(v: np.ndarray) -> list[float]:
    tot = float(v.sum())
    return [float(a / tot) if tot > 0 else 0.0 for a in v]


def _stats(v: np.ndarray) -> dict[str, Any]:
    ok = v[~np.isnan(v)]
    if ok.size == 0:
        return {"count": 0, "missing": int(v.size)}
    return {
        "count": int(ok.size),
        "missing": int(v.size - ok.size),
        "min": float(ok.min()),
        "mean": float(ok.mean()),
        "max": float(ok.max()),
    }
