"""Exact nearest-neighbour distances in blocks: typicality (kNN density) and similarity to a query set.

Both stream the embeddings in row blocks against column blocks, one GEMM per pair of blocks into a fixed
scratch (``_ROWS x _COLS`` float32, 64 MiB), never an N×N (or N×M) matrix: memory is O(N + rows·K) plus
the scratch, whatever N is. Squared distances are expanded as ``||x||² - 2 x·y + ||y||²`` in float32 and
clamped at 0 (as the coreset does), so they are exact up to float32 rounding; the neighbour sets are
exact (every pair is compared).

``device``: ``"cpu"`` (numpy/BLAS) or a torch device (``"cuda"``; ``"cpu:0"`` runs the torch code on
the CPU, for tests): the same blocks, with ``torch.topk`` for the running K smallest.
"""

from __future__ import annotations

import numpy as np

from kurate.selection.coreset import _as_matrix, _min_sq_dist_to_external, _row_sq_norms

_ROWS = 4096
_COLS = 4096


def nearest_query_distance(x: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Distance (float64) from each row of ``x`` to its nearest row of ``queries`` (blocked, exact)."""
    x = _as_matrix(x)
    q = _as_matrix(queries)
    if q.shape[0] == 0:
        raise ValueError("no query embeddings")
    if q.shape[1] != x.shape[1]:
        raise ValueError(f"query embeddings have dimension {q.shape[1]}, the run's {x.shape[1]}")
    out = np.full(x.shape[0], np.inf, dtype=np.float32)
    _min_sq_dist_to_external(x, _row_sq_norms(x), q, out)
    return np.sqrt(out.astype(np.float64))


def knn_mean_distance(x: np.ndarray, k: int, device: str = "cpu", rows: int | None = None) -> np.ndarray:
    """Mean distance (float64) from each row to its ``k`` nearest other rows (itself excluded).

    With fewer than ``k + 1`` rows every other row is a neighbour. Exact: each row is compared with
    every other row, block by block. ``rows``: only the first ``rows`` rows (against all of them; the
    benchmark times a slice of a large set this way).
    """
    x = _as_matrix(x)
    n = x.shape[0]
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n <= 1:
        return np.zeros(n)
    k = min(k, n - 1)
    last = n if rows is None else min(n, rows)
    if device != "cpu":
        return _knn_torch(x, k, device, last)
    sq = _row_sq_norms(x)
    d = x.shape[1]
    cols = min(_COLS, n)
    pts = np.empty((d, cols), dtype=np.float32)
    scratch = np.empty((min(_ROWS, n), cols), dtype=np.float32)
    result = np.empty(last, dtype=np.float64)
    for i0 in range(0, last, _ROWS):
        i1 = min(last, i0 + _ROWS)
        rows = i1 - i0
        best = np.full((rows, k), np.inf, dtype=np.float32)  # running k smallest (unordered)
        tau = np.full(rows, np.inf, dtype=np.float32)  # the k-th smallest so far: the bar to enter
        for j0 in range(0, n, cols):
            j1 = min(n, j0 + cols)
            m = j1 - j0
            pt = pts[:, :m]
            np.multiply(x[j0:j1].T, np.float32(-2.0), out=pt)
            g = scratch[:rows, :m]
            np.matmul(x[i0:i1], pt, out=g)  # -2 x·y
            g += sq[j0:j1]
            g += sq[i0:i1, None]
            lo, hi = max(i0, j0), min(i1, j1)
            if lo < hi:  # this block holds the rows themselves: exclude self
                r = np.arange(lo, hi)
                g[r - i0, r - j0] = np.inf
            if j0 == 0 and m >= k:  # the first block fills every row's k smallest at once
                best = np.partition(g, k - 1, axis=1)[:, :k].copy()
                tau = best.max(axis=1)
            else:
                best, tau = _merge(best, tau, g, k)
        np.maximum(best, 0, out=best)
        result[i0:i1] = np.sqrt(best.astype(np.float64)).mean(axis=1)
    return result


def _merge(best: np.ndarray, tau: np.ndarray, g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold the block ``g`` into each row's k smallest: only entries under the row's bar are touched.

    After the first blocks few entries beat the current k-th smallest, so the cost is one comparison
    per element plus work on the few that enter (a full partition per block would dominate).
    """
    hit = g < tau[:, None]
    r, c = np.nonzero(hit)
    if r.size == 0:
        return best, tau
    counts = np.bincount(r, minlength=len(best))
    rows = np.flatnonzero(counts)
    width = k + int(counts.max())
    merged = np.full((len(rows), width), np.inf, dtype=np.float32)
    merged[:, :k] = best[rows]
    # place each hit after its row's k current values: position k + rank within the row
    row_pos = np.searchsorted(rows, r)
    start = np.cumsum(counts) - counts  # first hit index of each row (hits come row by row)
    rank = np.arange(r.size) - start[r]
    merged[row_pos, k + rank] = g[r, c]
    part = np.partition(merged, k - 1, axis=1)[:, :k]
    best = best.copy()
    best[rows] = part
    tau = tau.copy()
    tau[rows] = part.max(axis=1)
    return best, tau


def _knn_torch(x: np.ndarray, k: int, device: str, last: int) -> np.ndarray:
    """:func:`knn_mean_distance` with torch on ``device``: the same blocks and arithmetic."""
    import torch

    dev = torch.device(device)
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(dev)
    sq = (xt * xt).sum(dim=1)
    n = xt.shape[0]
    out = torch.empty(last, dtype=torch.float64, device=dev)
    for i0 in range(0, last, _ROWS):
        i1 = min(last, i0 + _ROWS)
        best = torch.full((i1 - i0, k), float("inf"), device=dev)
        for j0 in range(0, n, _COLS):
            j1 = min(n, j0 + _COLS)
            g = torch.addmm(sq[j0:j1][None, :], xt[i0:i1], xt[j0:j1].T, alpha=-2.0)
            g += sq[i0:i1, None]
            g.clamp_(min=0.0)
            lo, hi = max(i0, j0), min(i1, j1)
            if lo < hi:
                r = torch.arange(lo, hi, device=dev)
                g[r - i0, r - j0] = float("inf")
            best = torch.topk(torch.cat([best, g], dim=1), k, dim=1, largest=False).values
        out[i0:i1] = best.double().sqrt().mean(dim=1)
    return out.cpu().numpy()


def typicality(x: np.ndarray, k: int, device: str = "cpu") -> np.ndarray:
    """TypiClust's typicality ``1 / mean distance to the k nearest neighbours``, scaled to max 1.

    Dense regions score high; the scale (max = 1) makes ``stopping_condition_minimum_typicality`` a
    number in (0, 1] as Lightly's API asks. A row whose k neighbours are exact copies (mean 0) would be
    infinitely typical: ``1 / (mean + eps)`` with ``eps`` a millionth of the mean positive distance.
    """
    mean = knn_mean_distance(x, k, device)
    if mean.size == 0:
        return mean
    positive = mean[mean > 0]
    eps = 1e-6 * float(positive.mean()) if positive.size else 1.0
    t = 1.0 / (mean + eps)
    return t / t.max()
