"""Sample selection: exact k-center greedy coreset, seeded random selection and their helpers.

Everything here works on an (N, d) embedding matrix in O(N·d) memory: distances are never
materialised as an N×N (or N×M) matrix. The coreset keeps one float32 vector of squared
distances to the selected set and refreshes it with a single GEMV per pick, so a step costs
one streaming read of the embeddings - the least any exact farthest-first step can cost.
"""

from __future__ import annotations

import math
import numbers
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np

__all__ = [
    "SelectionResult",
    "StopReason",
    "coreset",
    "coreset_with_info",
    "normalize",
    "random_selection",
    "resolve_n_samples",
    "select_device",
]

StopReason = Literal["n_samples", "min_distance", "exhausted", "no stopping condition"]

# Block sizes for distances to many points at once (preselected set): the scratch matrix is
# _ROW_BLOCK × _COL_BLOCK float32 (8 MiB), independent of N and of the number of points.
_ROW_BLOCK = 2048
_COL_BLOCK = 1024
# Distances to preselected points given as their own matrix (a datapool of up to millions of rows):
# the scratch is _EXT_ROWS × _EXT_COLS float32 (64 MiB), whatever N and M are.
_EXT_ROWS = 4096
_EXT_COLS = 4096


@dataclass(frozen=True)
class SelectionResult:
    """What a selection picked and why it stopped.

    indices: int64 indices of the new picks, in pick order (preselected points are not included).
    pick_distances: float64, raw Euclidean distance of each pick to the set selected before it
        (preselected included). The first pick with nothing preselected has no set before it: inf.
        Random selection without ``min_distance`` does not compute distances: all NaN.
    stop_reason: "n_samples" (the requested count was reached), "min_distance" (no remaining point
        is at least ``min_distance`` from the selected set), "exhausted" (every point is selected) or
        "no stopping condition" (neither was set: every point is selected, in input order, no distances).
    """

    indices: np.ndarray
    pick_distances: np.ndarray
    stop_reason: StopReason
    #: Picks folded in by the pruned step (:class:`_Pruner`) rather than the plain one (0: never used).
    pruned_steps: int = 0


# ----------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------


def _as_matrix(embeddings: np.ndarray) -> np.ndarray:
    """Return the embeddings as C-contiguous float32, copying only when needed.

    C order makes BLAS sgemv stream rows; float32 halves the bytes each step reads. Finiteness is
    checked later on the row norms (NaN/inf propagate into them) to avoid an N×d temporary.
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D (N, d) array, got shape {x.shape}")
    return x


def _check_n_samples(n_samples: int | None) -> None:
    if n_samples is None:
        return
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral):
        raise ValueError(f"n_samples must be an int or None, got {n_samples!r}")
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")


def _check_min_distance(min_distance: float | None) -> float | None:
    """Return the squared threshold (distances are kept squared), or None when inactive."""
    if min_distance is None:
        return None
    if isinstance(min_distance, bool) or not isinstance(min_distance, numbers.Real):
        raise ValueError(f"min_distance must be a number or None, got {min_distance!r}")
    md = float(min_distance)
    if math.isnan(md) or md < 0:
        raise ValueError(f"min_distance must be >= 0, got {min_distance!r}")
    return md * md


def _as_indices(preselected: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """Return the unique preselected indices as sorted int64, rejecting anything that is not an index."""
    arr = np.asarray(preselected)
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.ndim != 1 or arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError("preselected must be a 1-D sequence of integer indices")
    if arr.min() < 0 or arr.max() >= n:
        raise ValueError(f"preselected indices must be in [0, {n}), got range [{arr.min()}, {arr.max()}]")
    return np.unique(arr.astype(np.int64))


def _weights_sq(weights: np.ndarray | None, n: int) -> np.ndarray | None:
    """Return squared weights scaled to max 1 (float64), or None.

    argmax(w·d) == argmax(w²·d²) for w, d >= 0, so the squared distances we keep need no sqrt;
    scaling by the max keeps w² from overflowing and does not change any argmax.
    """
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {w.shape}")
    if n and (not np.isfinite(w).all() or w.min() < 0):
        raise ValueError("weights must be finite and non-negative")
    top = w.max() if n else 0.0
    if top > 0:
        w = w / top
    return w * w


# ----------------------------------------------------------------------------------------------
# distance kernels
# ----------------------------------------------------------------------------------------------


def _row_sq_norms(x: np.ndarray) -> np.ndarray:
    """Squared row norms (float32), which also rejects non-finite input in one N-length check."""
    sq = np.einsum("ij,ij->i", x, x)
    if sq.size and not np.isfinite(sq).all():
        raise ValueError(
            "embeddings contain NaN or infinite values, or are too large for float32 squared distances"
        )
    return sq


def _centroid(x: np.ndarray) -> np.ndarray:
    """Mean row (float32) accumulated in float64 across row blocks.

    Each block is summed by a float32 GEMV (ones @ block, one streaming pass); ``x.mean(axis=0,
    dtype=float64)`` gives the same precision but converts every element and is ~6x slower.
    """
    n, d = x.shape
    total = np.zeros(d, dtype=np.float64)
    ones = np.ones(min(n, 8 * _ROW_BLOCK), dtype=np.float32)
    for i0 in range(0, n, len(ones)):
        blk = x[i0 : i0 + len(ones)]
        total += ones[: len(blk)] @ blk
    return (total / max(n, 1)).astype(np.float32)


def _sq_dist_to_vector(
    x: np.ndarray, sq: np.ndarray, c: np.ndarray, c_sq: float, out: np.ndarray, zeros: np.ndarray
) -> None:
    """Write max(||x_i - c||², 0) into ``out`` with one GEMV and three cheap N-length passes.

    ``c`` is folded as -2c so the GEMV yields -2 x·c directly. For a data row pass ``c_sq`` from
    ``sq`` so an exact duplicate of ``c`` gets the same rounding on both norms (usually exactly 0).
    The clamp uses a zeros vector because numpy's maximum against a scalar is not vectorised
    (about 4x slower than array-array).
    """
    np.dot(x, np.asarray(c, dtype=np.float32) * np.float32(-2.0), out=out)
    np.add(out, sq, out=out)
    np.add(out, np.float32(c_sq), out=out)
    np.maximum(out, zeros, out=out)


def _min_sq_dist_to_points(x: np.ndarray, sq: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:
    """Write each row's squared distance to its nearest point among ``x[idx]`` into ``out``.

    Blocked over rows and points so the scratch is _ROW_BLOCK × _COL_BLOCK whatever N and len(idx):
    the preselected set can be as large as the dataset without an N×M matrix.
    """
    n = x.shape[0]
    out.fill(np.inf)
    scratch = np.empty((_ROW_BLOCK, min(_COL_BLOCK, len(idx))), dtype=np.float32)
    for j0 in range(0, len(idx), _COL_BLOCK):
        cols = idx[j0 : j0 + _COL_BLOCK]
        pts_t = np.ascontiguousarray(x[cols].T)  # (d, m): small, contiguous for the GEMM
        pts_sq = sq[cols]
        for i0 in range(0, n, _ROW_BLOCK):
            i1 = min(n, i0 + _ROW_BLOCK)
            g = scratch[: i1 - i0, : len(cols)]
            np.matmul(x[i0:i1], pts_t, out=g)
            g *= np.float32(-2.0)
            g += pts_sq
            block_min = g.min(axis=1)
            block_min += sq[i0:i1]
            np.maximum(block_min, 0, out=block_min)
            np.minimum(out[i0:i1], block_min, out=out[i0:i1])


def _as_external(points: np.ndarray | None, d: int) -> np.ndarray | None:
    """Preselected points given as vectors (M, d): float32 view/copy, or None when there are none."""
    if points is None:
        return None
    p = np.asarray(points)
    if p.ndim != 2 or (p.shape[0] and p.shape[1] != d):
        raise ValueError(f"preselected_embeddings must have shape (M, {d}), got {p.shape}")
    return p if p.shape[0] else None


def _min_sq_dist_to_external(
    x: np.ndarray, sq: np.ndarray, points: np.ndarray, out: np.ndarray, cols: int | None = None
) -> None:
    """Fold each row's squared distance to its nearest row of ``points`` into ``out`` (min with it).

    Streams ``points`` in blocks of ``cols`` rows (it may be a memory map of millions of rows) and
    ``x`` in blocks of _EXT_ROWS, one GEMM per pair of blocks into a fixed scratch: memory is
    O(N·d + block²), never N×M. The GEMM yields ||p||² - 2x·p directly (``x`` gets a column of
    ones, each block of points the column ||p||²), so each scratch element is written once by BLAS
    and read once by the row-min.
    """
    n, d = x.shape
    m = points.shape[0]
    cols = _EXT_COLS if cols is None else cols
    x_aug = np.empty((n, d + 1), dtype=np.float32)
    x_aug[:, :d] = x
    x_aug[:, d] = 1.0
    scratch = np.empty((min(_EXT_ROWS, n), min(cols, m)), dtype=np.float32)
    pts_t = np.empty((d + 1, min(cols, m)), dtype=np.float32)
    block_min = np.empty(min(_EXT_ROWS, n), dtype=np.float32)
    for j0 in range(0, m, cols):
        blk = np.ascontiguousarray(points[j0 : j0 + cols], dtype=np.float32)
        mb = len(blk)
        pt = pts_t[:, :mb]
        np.multiply(blk.T, np.float32(-2.0), out=pt[:d])
        pt[d] = _row_sq_norms(blk)
        for i0 in range(0, n, _EXT_ROWS):
            i1 = min(n, i0 + _EXT_ROWS)
            g = scratch[: i1 - i0, :mb]
            np.matmul(x_aug[i0:i1], pt, out=g)
            bm = block_min[: i1 - i0]
            np.min(g, axis=1, out=bm)
            bm += sq[i0:i1]
            np.maximum(bm, 0, out=bm)
            np.minimum(out[i0:i1], bm, out=out[i0:i1])


# ----------------------------------------------------------------------------------------------
# coreset
# ----------------------------------------------------------------------------------------------


#: Pruned greedy (exact): picks before the first timing trial, and the smallest run it is tried on.
PRUNE_TRIAL_AT = 48
PRUNE_MIN_PICKS = 256
#: ... and the smallest N x d (values) it is tried on: below, a plain step is too quick to gain from pruning.
PRUNE_MIN_VALUES = 2_000_000
PRUNE_ENV = "KURATE_CORESET_PRUNE"


class _Pruner:
    """The exact pruned farthest-first step: per-centre radius bounds skip points a new pick cannot reach.

    Every unselected point ``i`` remembers its nearest pick ``assign[i]`` and its squared distance
    ``mind[i]`` (the state the plain step keeps too); each pick ``c`` knows its radius ``r_c``, the
    largest distance of a point assigned to it. By the triangle inequality a new pick ``p`` can come
    closer to a point of ``c`` only if ``d(c, p) < 2 r_c``, so only those centres' points are measured:
    the distances of the others cannot change. The next pick is still the argmax of ``mind`` over all
    points (lowest index on ties), so the picks are those of the plain step up to float ties. A point's
    distance to the new pick is the same float32 expression as in the plain step.

    Costs per pick: one GEMV over the picks so far, a few N-length passes over 4-byte arrays (the
    plain step reads the whole N x d matrix), and the distances of the reachable points.
    """

    def __init__(self, x: np.ndarray, sq: np.ndarray, capacity: int) -> None:
        n, d = x.shape
        self.x, self.sq = x, sq
        self.assign = np.zeros(n, dtype=np.int32)  # index into the picks list
        self.centres = np.empty((max(capacity, 1), d), dtype=np.float32)
        self.centre_sq = np.empty(max(capacity, 1), dtype=np.float32)
        self.radius = np.empty(0, dtype=np.float32)  # per pick, distance units; rebuilt by start()
        self.k = 0
        # Rounding slack: the float32 expanded squared distances are off by at most about
        # (d + 3) * 2.4e-7 * max ||x||^2, so each distance by at most the root of that; three such
        # errors meet in the test below. A skipped centre is skipped beyond doubt.
        bound = (d + 3) * 2.4e-7 * max(float(sq.max(initial=0.0)), 1e-30)
        self.slack = 3.0 * float(np.sqrt(bound))
        self.is_cand = np.zeros(max(capacity, 1), dtype=np.bool_)

    def add_centre(self, i: int) -> None:
        if self.k == len(self.centre_sq):  # grow (min_distance runs have no known k)
            self.centres = np.concatenate([self.centres, np.empty_like(self.centres)])
            self.centre_sq = np.concatenate([self.centre_sq, np.empty_like(self.centre_sq)])
            self.is_cand = np.concatenate([self.is_cand, np.zeros_like(self.is_cand)])
        self.centres[self.k] = self.x[i]
        self.centre_sq[self.k] = self.sq[i]
        self.assign[i] = self.k
        self.k += 1

    def track(self, buf: np.ndarray, mind: np.ndarray, mask: np.ndarray) -> None:
        """Plain step with assignment: fold the distances ``buf`` to the newest pick into ``mind``."""
        np.less(buf, mind, out=mask)
        np.putmask(mind, mask, buf)
        np.putmask(self.assign, mask, self.k - 1)

    def start(self, mind: np.ndarray) -> None:
        """(Re)build every pick's radius from the current state (one pass)."""
        r2 = np.full(self.k, -np.inf, dtype=np.float32)
        live = mind > -np.inf
        np.maximum.at(r2, self.assign[live], mind[live])
        self.radius = np.sqrt(np.maximum(r2, 0)).astype(np.float32)
        self.radius[r2 == -np.inf] = -np.inf

    def step(self, p: int, mind: np.ndarray) -> int:
        """Fold the newest pick ``p`` (already added) into ``mind``; returns the points measured."""
        k = self.k
        x, sq = self.x, self.sq
        vp = x[p]
        self.radius = np.append(self.radius, np.float32(-np.inf))
        old = self.centres[: k - 1]
        if k > 1:
            dc2 = old @ (vp * np.float32(-2.0))
            dc2 += self.centre_sq[: k - 1]
            dc2 += sq[p]
            np.maximum(dc2, 0, out=dc2)
            cand = np.flatnonzero(np.sqrt(dc2) < 2 * self.radius[: k - 1] + self.slack)
        else:
            cand = np.empty(0, dtype=np.int64)
        if len(cand) == 0:
            return 0
        is_cand = self.is_cand
        is_cand[cand] = True
        idx = np.flatnonzero(is_cand[self.assign])
        is_cand[cand] = False
        d2 = x[idx] @ (vp * np.float32(-2.0))
        d2 += sq[idx]
        d2 += np.float32(sq[p])
        np.maximum(d2, 0, out=d2)
        cur = mind[idx]
        moved = d2 < cur
        np.putmask(cur, moved, d2)
        mind[idx] = cur
        a = self.assign[idx]
        a[moved] = k - 1
        self.assign[idx] = a
        # Radii of the centres that lost points and of the new pick, from their points' distances.
        r2 = np.full(k, -np.inf, dtype=np.float32)
        live = cur > -np.inf
        np.maximum.at(r2, a[live], cur[live])
        touched = np.append(cand, k - 1)
        self.radius[touched] = np.where(r2[touched] == -np.inf, -np.inf, np.sqrt(np.maximum(r2[touched], 0)))
        return len(idx)


class _PrunePolicy:
    """Plain or pruned steps, chosen by timing both in this run (``KURATE_CORESET_PRUNE=auto``).

    Plain steps first (with the nearest-pick bookkeeping); after :data:`PRUNE_TRIAL_AT` picks the
    pruned step gets a trial window; it stays while its median step time beats the plain steps' and
    hands back otherwise, with the next trial twice as far away; after :data:`MAX_FAILED_TRIALS` trials
    that did not pay it gives up (``abandoned``: plain steps without the bookkeeping from then on).
    ``on`` prunes from the second pick on (tests); ``off`` never.
    """

    MAX_FAILED_TRIALS = 2

    WINDOW = 16

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.pruned = False
        self.pruned_steps = 0
        self.plain: list[float] = []
        self.trial: list[float] = []
        self.plain_ref = 0.0
        self.next_trial = PRUNE_TRIAL_AT
        self.backoff = PRUNE_TRIAL_AT
        self.failed_trials = 0
        self.abandoned = False

    def record(self, seconds: float, n_picks: int) -> bool:
        """Note one step's time; True when the caller must switch to pruned steps now."""
        if self.mode == "on":
            if not self.pruned:
                self.pruned = True
                return True
            return False
        if self.pruned:
            self.trial.append(seconds)
            if len(self.trial) >= self.WINDOW:
                if statistics.median(self.trial) > self.plain_ref:  # not paying: plain steps again
                    self.pruned = False
                    self.failed_trials += 1
                    self.abandoned = self.failed_trials >= self.MAX_FAILED_TRIALS
                    self.backoff *= 2
                    self.next_trial = n_picks + self.backoff
                    self.plain = []
                self.trial = []
            return False
        self.plain.append(seconds)
        if n_picks >= self.next_trial and len(self.plain) >= self.WINDOW:
            self.plain_ref = statistics.median(self.plain[-self.WINDOW :])
            self.pruned = True
            self.trial = []
            return True
        return False


def coreset_with_info(
    embeddings: np.ndarray,
    n_samples: int | None = None,
    min_distance: float | None = None,
    preselected: Sequence[int] | np.ndarray = (),
    weights: np.ndarray | None = None,
    preselected_embeddings: np.ndarray | None = None,
    device: str = "cpu",
) -> SelectionResult:
    """Exact k-center greedy (farthest-first on Euclidean distance), with the reason it stopped.

    Each pick is the unselected point whose distance to the selected set (preselected included) is
    largest - times its weight when ``weights`` is given (zero-weight points score 0, so they come
    after every positive score, lowest index first). ``min_distance`` is always judged on the raw,
    unweighted distance: only points at least that far from every selected point are eligible.

    Start: with ``preselected`` the first pick is the point farthest from them. Without, it is the
    point farthest from the centroid (mean) of all embeddings (weighted like any pick), which is
    deterministic and lands on the hull of the data like every later pick. Ties go to the lowest index.

    Stops at the first of: ``n_samples`` new picks; no unselected point eligible under
    ``min_distance`` (so all selected points, preselected included, are pairwise >= min_distance and
    no further point could be added); every point selected. ``n_samples`` larger than what is
    available selects all available. At least one of ``n_samples`` / ``min_distance`` is required.

    ``preselected_embeddings`` (M, d) are further already-selected points that are not candidates
    (a datapool): they count like ``preselected`` rows, and their distances are streamed in blocks
    (O(N + block²) extra memory, never N×M), so M can be millions.

    Memory O(N·d); each step is one GEMV over the embeddings plus a few N-length float32 passes.
    Distances are float32 squared norms expanded as ||x||² - 2x·c + ||c||², so distances below about
    sqrt(1e-7)·||x|| are rounding noise: compare ``min_distance`` on normalized embeddings.

    ``device``: ``"cpu"`` (numpy), or a torch device for the greedy steps (``"cuda"``, ``"cuda:1"``;
    ``"cpu:0"`` runs the torch steps on the CPU, for checks), which then read the embeddings from GPU
    memory (see :func:`select_device`); the start (centroid, preselected) is computed with numpy either
    way. Same algorithm and float32 arithmetic, so the picks agree except where two candidates'
    distances tie to the last bits (summation order differs).
    """
    x = _as_matrix(embeddings)
    _check_n_samples(n_samples)
    thr = _check_min_distance(min_distance)
    if n_samples is None and thr is None:
        raise ValueError("coreset needs a stopping condition: n_samples and/or min_distance")
    n = x.shape[0]
    pre = _as_indices(preselected, n)
    ext = _as_external(preselected_embeddings, x.shape[1])
    w2 = _weights_sq(weights, n)

    picks: list[int] = []
    dists: list[float] = []
    prune = os.environ.get(PRUNE_ENV, "auto").strip().lower() or "auto"
    if prune not in ("auto", "on", "off"):
        raise ValueError(f"{PRUNE_ENV} must be auto, on or off, got {prune!r}")
    policy = _PrunePolicy(prune)

    def result(reason: StopReason) -> SelectionResult:
        return SelectionResult(
            indices=np.asarray(picks, dtype=np.int64),
            pick_distances=np.asarray(dists, dtype=np.float64),
            stop_reason=reason,
            pruned_steps=policy.pruned_steps,
        )

    if n_samples == 0:
        return result("n_samples")
    if len(pre) == n:
        return result("exhausted")

    sq = _row_sq_norms(x)
    zeros = np.zeros(n, dtype=np.float32)
    mind = np.empty(n, dtype=np.float32)  # squared distance to the selected set; -inf marks selected
    buf = np.empty(n, dtype=np.float32)
    score = np.empty(n, dtype=np.float64) if w2 is not None else None
    w2_eff = w2.copy() if w2 is not None else None  # selected rows get weight 1 so -inf stays -inf
    ineligible = np.empty(n, dtype=np.bool_) if (w2 is not None and thr is not None) else None
    # With min_distance == 0 every unselected point is eligible (clamped distances are >= 0).
    n_selected = len(pre)

    def choose(first_free: bool) -> int:
        """Index of the next pick, or -1 when no unselected point is eligible."""
        if w2_eff is None:
            i = int(np.argmax(mind))
            if not first_free and thr is not None and mind[i] < thr:
                return -1
            return i
        assert score is not None
        np.multiply(mind, w2_eff, out=score)
        if not first_free and ineligible is not None and thr is not None:
            np.less(mind, thr, out=ineligible)
            np.putmask(score, ineligible, -np.inf)
        i = int(np.argmax(score))
        return -1 if score[i] == -np.inf else i

    # The exact pruned step (large k, plain k-center on the CPU): decided by timing during the run.
    large = (n_samples is None or n_samples >= PRUNE_MIN_PICKS) and x.size >= PRUNE_MIN_VALUES
    plain_kcenter = device == "cpu" and w2 is None and ext is None and not len(pre)
    pruner = None
    if plain_kcenter and (prune == "on" or (prune == "auto" and large)):
        pruner = _Pruner(x, sq, (n_samples or 0) + 1)

    def take(i: int, dist: float) -> None:
        nonlocal n_selected
        picks.append(i)
        dists.append(dist)
        mind[i] = -np.inf
        if pruner is not None:
            pruner.add_centre(i)
        if w2_eff is not None:
            w2_eff[i] = 1.0
        n_selected += 1

    if len(pre) or ext is not None:
        mind.fill(np.inf)
        if len(pre):
            _min_sq_dist_to_points(x, sq, pre, mind)
        if ext is not None:
            _min_sq_dist_to_external(x, sq, ext, mind)
        mind[pre] = -np.inf
        if w2_eff is not None:
            w2_eff[pre] = 1.0
    else:
        # Nothing selected yet: rank by distance to the centroid; the pick is at infinite distance
        # from the (empty) selected set, so min_distance never rejects it.
        centroid = _centroid(x)
        c_sq = float(np.dot(centroid.astype(np.float64), centroid.astype(np.float64)))
        _sq_dist_to_vector(x, sq, centroid, c_sq, mind, zeros)
        first = choose(first_free=True)
        mind.fill(np.inf)
        take(first, math.inf)

    track_mask = np.empty(n if pruner is not None else 0, dtype=np.bool_)
    if device != "cpu":
        reason = _greedy_torch(x, sq, mind, w2_eff, thr, n_samples, picks, dists, n_selected, device)
        return result(reason)
    while True:
        if n_samples is not None and len(picks) >= n_samples:
            return result("n_samples")
        if n_selected == n:
            return result("exhausted")
        t0 = time.perf_counter()
        if picks:  # fold in the latest pick (deferred so the final pick costs no GEMV)
            last = picks[-1]
            if pruner is not None and policy.pruned:
                pruner.step(last, mind)
                policy.pruned_steps += 1
            else:
                _sq_dist_to_vector(x, sq, x[last], float(sq[last]), buf, zeros)
                if pruner is None:
                    np.minimum(mind, buf, out=mind)
                else:
                    pruner.track(buf, mind, track_mask)
        i = choose(first_free=False)
        if i < 0:
            return result("min_distance")
        take(i, math.sqrt(max(float(mind[i]), 0.0)))
        if pruner is not None and policy.record(time.perf_counter() - t0, len(picks)):
            pruner.start(mind)
        if policy.abandoned:
            pruner = None  # pruning does not pay on this data: plain steps, no bookkeeping


def _greedy_torch(
    x: np.ndarray,
    sq: np.ndarray,
    mind: np.ndarray,
    w2_eff: np.ndarray | None,
    thr: float | None,
    n_samples: int | None,
    picks: list[int],
    dists: list[float],
    n_selected: int,
    device: str,
) -> StopReason:
    """The greedy steps of :func:`coreset_with_info` with torch on ``device``: the same arithmetic.

    ``mind`` holds the squared distances to the selected set so far (-inf: selected); ``picks`` and
    ``dists`` are extended in place. One GEMV, a few N-length passes and one host sync per pick.
    """
    import torch

    dev = torch.device(device)
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(dev)
    sqt = torch.from_numpy(sq).to(dev)
    md = torch.from_numpy(mind).to(dev)
    w2 = torch.from_numpy(w2_eff).to(dev) if w2_eff is not None else None
    buf = torch.empty_like(md)
    score = torch.empty(md.shape, dtype=torch.float64, device=dev) if w2 is not None else None
    neg_inf = float("-inf")
    n = int(xt.shape[0])
    while True:
        if n_samples is not None and len(picks) >= n_samples:
            return "n_samples"
        if n_selected == n:
            return "exhausted"
        if picks:  # fold in the latest pick
            last = picks[-1]
            torch.mv(xt, xt[last] * -2.0, out=buf)
            buf += sqt
            buf += sqt[last]
            buf.clamp_(min=0.0)
            torch.minimum(md, buf, out=md)
        if w2 is None or score is None:
            best, idx = torch.max(md, dim=0)
            i, d2 = int(idx), float(best)
            if thr is not None and d2 < thr:
                return "min_distance"
        else:
            torch.mul(md, w2, out=score)
            if thr is not None:
                score.masked_fill_(md < thr, neg_inf)
            best, idx = torch.max(score, dim=0)
            if float(best) == neg_inf:
                return "min_distance"
            i = int(idx)
            d2 = float(md[i])
            w2[i] = 1.0
        picks.append(i)
        dists.append(math.sqrt(max(d2, 0.0)))
        md[i] = neg_inf
        n_selected += 1


#: Below this many embedding values (N·d) the numpy steps are already fast; a GPU would not pay.
GPU_MIN_VALUES = 1 << 22


def select_device(n: int, d: int, requested: str = "auto") -> str:
    """The device for the coreset's greedy steps: ``requested`` (``cpu``, ``cuda``), or one for ``auto``.

    ``auto`` is CUDA when torch sees a GPU, the embeddings are large enough to gain
    (N·d >= ``GPU_MIN_VALUES``) and they fit in half of the GPU's free memory; else the CPU.
    """
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device: got {requested!r}; allowed: auto, cpu, cuda")
    if requested != "auto":
        return requested
    if n * d < GPU_MIN_VALUES:
        return "cpu"
    try:
        import torch
    except ImportError:  # the select image ships without torch
        return "cpu"
    if not torch.cuda.is_available():
        return "cpu"
    free, _total = torch.cuda.mem_get_info()
    return "cuda" if (n * d + 4 * n) * 4 < free // 2 else "cpu"


def coreset(
    embeddings: np.ndarray,
    n_samples: int | None = None,
    min_distance: float | None = None,
    preselected: Sequence[int] | np.ndarray = (),
    weights: np.ndarray | None = None,
    preselected_embeddings: np.ndarray | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """Indices (int64, pick order) of the new k-center greedy picks; see :func:`coreset_with_info`."""
    return coreset_with_info(
        embeddings, n_samples, min_distance, preselected, weights, preselected_embeddings, device
    ).indices


# ----------------------------------------------------------------------------------------------
# random
# ----------------------------------------------------------------------------------------------


def _visit_order(rng: np.random.Generator, candidates: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """A random order of ``candidates``; weighted, it is successive sampling with p ∝ weight.

    Weighted order uses Efraimidis-Spirakis keys log(u)/w (largest first), which draws without
    replacement with probability proportional to weight at every step. Zero-weight points can
    never be drawn that way; they come last, in uniform random order, so asking for more samples
    than there are positive weights still behaves like the unweighted case for the rest.
    """
    if weights is None:
        return rng.permutation(candidates)
    w = weights[candidates]
    u = 1.0 - rng.random(len(candidates))  # (0, 1]: log is finite
    pos = w > 0
    keys = np.full(len(candidates), -np.inf)
    keys[pos] = np.log(u[pos]) / w[pos]
    heavy = candidates[pos][np.argsort(-keys[pos], kind="stable")]
    light = rng.permutation(candidates[~pos])
    return np.concatenate([heavy, light])


def random_selection(
    n: int,
    n_samples: int | None,
    seed: int,
    weights: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    min_distance: float | None = None,
    preselected: Sequence[int] = (),
    preselected_embeddings: np.ndarray | None = None,
) -> SelectionResult:
    """Seeded random picks among the ``n`` points, never a preselected one.

    Reproducible: the same arguments and ``seed`` give the same picks (``np.random.default_rng``).
    With ``weights`` the draw is without replacement with probability ∝ weight (zero weights last).
    With ``min_distance`` (needs ``embeddings``) points are visited in that random order and
    accepted only if their raw distance to every selected and preselected point is >= min_distance,
    streaming one min-distance vector (O(N·d) memory, one GEMV per accepted point);
    ``preselected_embeddings`` (M, d) count as selected points too (distances streamed in blocks).
    Stops at ``n_samples`` picks or when no candidate is left; one of the two conditions is required.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    _check_n_samples(n_samples)
    thr = _check_min_distance(min_distance)
    if n_samples is None and thr is None:
        raise ValueError("random selection needs a stopping condition: n_samples and/or min_distance")
    pre = _as_indices(preselected, n)
    w: np.ndarray | None = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n,):
            raise ValueError(f"weights must have shape ({n},), got {w.shape}")
        if n and (not np.isfinite(w).all() or w.min() < 0):
            raise ValueError("weights must be finite and non-negative")
    x: np.ndarray | None = None
    if thr is not None:
        if embeddings is None:
            raise ValueError("random selection with min_distance needs embeddings")
        x = _as_matrix(embeddings)
        if x.shape[0] != n:
            raise ValueError(f"embeddings have {x.shape[0]} rows, expected n={n}")

    rng = np.random.default_rng(seed)
    free = np.ones(n, dtype=np.bool_)
    free[pre] = False
    order = _visit_order(rng, np.flatnonzero(free).astype(np.int64), w)

    if x is None or thr is None:
        assert n_samples is not None
        picks = order[:n_samples]
        reason: StopReason = "n_samples" if len(picks) == n_samples else "exhausted"
        return SelectionResult(picks, np.full(len(picks), np.nan), reason)

    sq = _row_sq_norms(x)
    zeros = np.zeros(n, dtype=np.float32)
    mind = np.full(n, np.inf, dtype=np.float32)
    buf = np.empty(n, dtype=np.float32)
    if len(pre):
        _min_sq_dist_to_points(x, sq, pre, mind)
    ext = _as_external(preselected_embeddings, x.shape[1])
    if ext is not None:
        _min_sq_dist_to_external(x, sq, ext, mind)
    accepted: list[int] = []
    dists: list[float] = []
    rejected = False
    for i in order.tolist():
        if n_samples is not None and len(accepted) >= n_samples:
            break
        d2 = float(mind[i])
        if d2 < thr:
            rejected = True
            continue
        accepted.append(i)
        dists.append(math.sqrt(d2))
        if n_samples is None or len(accepted) < n_samples:
            _sq_dist_to_vector(x, sq, x[i], float(sq[i]), buf, zeros)
            np.minimum(mind, buf, out=mind)
    if n_samples is not None and len(accepted) == n_samples:
        reason = "n_samples"
    else:
        reason = "min_distance" if rejected else "exhausted"
    return SelectionResult(np.asarray(accepted, dtype=np.int64), np.asarray(dists, dtype=np.float64), reason)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def resolve_n_samples(n_samples_cfg: int | float, input_size: int) -> int | None:
    """Turn the config's ``n_samples`` into a count, or None when the condition is off.

    Lightly semantics: -1 disables it; an int >= 1 is a count; a float in (0, 1] is a fraction of
    ``input_size``, floored but at least 1 when there is any input (a positive fraction never means
    "select nothing"). The fraction is applied to the float's shortest decimal form, so 0.29 of 100
    is 29, not 28 from binary rounding. Note 1 (int) is one sample while 1.0 is everything. Booleans,
    0, other negatives, NaN and floats outside (0, 1] raise ValueError.
    """
    if isinstance(input_size, bool) or not isinstance(input_size, numbers.Integral) or input_size < 0:
        raise ValueError(f"input_size must be a non-negative int, got {input_size!r}")
    if isinstance(n_samples_cfg, bool):
        raise ValueError(f"n_samples must be -1, an int >= 1 or a float in (0, 1], got {n_samples_cfg!r}")
    if isinstance(n_samples_cfg, numbers.Integral):
        value = int(n_samples_cfg)
        if value == -1:
            return None
        if value >= 1:
            return value
        raise ValueError(f"n_samples must be -1 (off) or an int >= 1, got {value}")
    if isinstance(n_samples_cfg, numbers.Real):
        frac = float(n_samples_cfg)
        if not (0.0 < frac <= 1.0):  # also rejects NaN
            raise ValueError(f"a fractional n_samples must be in (0, 1], got {n_samples_cfg!r}")
        if input_size == 0:
            return 0
        return max(1, math.floor(Fraction(repr(frac)) * input_size))
    raise ValueError(f"n_samples must be -1, an int >= 1 or a float in (0, 1], got {n_samples_cfg!r}")


def normalize(embeddings: np.ndarray) -> np.ndarray:
    """Return float32 rows scaled to unit Euclidean length (zero rows stay zero), as a new array.

    Norms are accumulated in float64 so large float32 values do not overflow to inf and zero a row.
    """
    x = np.array(embeddings, dtype=np.float32, order="C", copy=True)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D (N, d) array, got shape {x.shape}")
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    if norms.size and not np.isfinite(norms).all():
        raise ValueError("embeddings contain NaN or infinite values")
    norms[norms == 0] = 1.0  # zero rows divide by 1 and stay zero
    x /= norms.astype(np.float32)[:, None]
    return x
