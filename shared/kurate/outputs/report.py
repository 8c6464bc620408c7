"""The run report: what was selected and why, as ``report.html`` + ``plots/*.png`` + ``report.json`` data.

Export calls :func:`build` just before it writes ``report.json`` (which marks the run complete). The
HTML is one jinja2 template (``templates/report.html.j2``) rendered self-contained: plots and thumbnails
are embedded as data URIs, nothing is fetched, so the file can be mailed, opened from a bucket or
archived.

Cost is bounded by ``memory_requirement_in_GB`` (cap in GiB on the float32 distance matrix, Lightly's
key): the pairwise-distance histograms use a seeded subsample of at most ``m`` points where ``m×m``
distances fit the cap, and every other statistic computes at most ``m²`` distances too (when the exact
figure would need more, it is estimated from a seeded sample of query points, and the report says so).
Distances are computed in blocks of at most ``BLOCK_BYTES``: no matrix larger than the cap is ever built,
and nothing N×N at all. Statistics need only numpy; plots (matplotlib, Agg) and the HTML (jinja2) come
from the ``report`` extra.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import logging
import math
import platform
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kurate import __version__
from kurate.errors import CorruptFileError, KurateError
from kurate.io import filelist, storage
from kurate.media import image
from kurate.outputs import objects
from kurate.selection.coreset import normalize

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kurate.outputs.inputs import RunInputs

log = logging.getLogger("kurate.outputs.report")

REPORT_HTML = "report.html"
PLOTS_DIR = "plots"
TEMPLATE = "report.html.j2"
#: Seed of every random draw in the report (subsamples, the random comparison subset): reruns match.
SEED = 0
HIST_BINS = 100
#: Largest block of distances held at once (float32), whatever the data size.
BLOCK_BYTES = 32 << 20
THUMB_PX = 160
MAX_TABLE_ROWS = 500
MAX_SCATTER = 30_000
MAX_VIDEOS = 24
#: Lightly's frame names: ``<video stem>-<frame index>-<video extension>.png`` (spec, "Frame names").
FRAME_RE = re.compile(r"^(?P<stem>.+)-(?P<frame>\d+)-(?P<ext>mp4|mov|avi|mkv|webm|m4v)\.png$", re.IGNORECASE)

SELECTION_KEYS = (
    "method",
    "requested",
    "min_distance",
    "selected",
    "stop_reason",
    "normalized_embeddings",
    "scorer",
    "masked",
    "preselected",
    "requirements",
)

COLORS = {
    "selected": "#2563eb",
    "removed": "#94a3b8",
    "duplicate": "#f59e0b",
    "corrupt": "#dc2626",
    "input": "#475569",
    "random": "#a855f7",
    "marker": "#dc2626",
}


# ---------------------------------------------------------------------------------------------- distances


def max_points(memory_gb: float) -> int:
    """Largest ``m`` whose ``m×m`` float32 distance matrix fits in ``memory_gb`` GiB (at least 2)."""
    return max(2, math.isqrt(int(memory_gb * 2**30) // 4))


def block_elems(memory_gb: float) -> int:
    """Distances held at once: ``BLOCK_BYTES``, or less when the cap itself is smaller."""
    return max(1, min(BLOCK_BYTES // 4, max_points(memory_gb) ** 2))


def seeded_subset(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """``min(n, m)`` distinct indices of ``range(n)``, sorted (all of them when ``m >= n``)."""
    if m >= n:
        return np.arange(n, dtype=np.int64)
    return np.sort(rng.choice(n, size=m, replace=False)).astype(np.int64)


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x, dtype=np.float32) if len(x) else np.zeros(0, np.float32)


def pair_histogram(x: np.ndarray, bins: int, hi: float, max_elems: int) -> np.ndarray:
    """Histogram of the ``m(m-1)/2`` pairwise Euclidean distances of the rows of ``x``.

    ``bins`` bins on ``[0, hi]`` (larger distances count in the last bin); at most ``max_elems``
    distances are held at a time.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    m = len(x)
    counts = np.zeros(bins, dtype=np.int64)
    if m < 2:
        return counts
    sq = _sq_norms(x)
    s2 = np.float32((bins / hi) ** 2)
    one = np.ones((m, 1), np.float32)
    # One GEMM gives s²|a-b|² = s²(|a|² + |b|² - 2a·b): rows [-2s²a, s²|a|², s²] times rows [b, 1, |b|²]
    left = np.hstack([x * (-2 * s2), sq[:, None] * s2, one * s2])
    right = np.hstack([x, one, sq[:, None]])
    top = np.float32((bins - 0.5) ** 2)
    rows = max(1, max_elems // m)
    for i0 in range(0, m, rows):
        i1 = min(m, i0 + rows)
        g = left[i0:i1] @ right[i0:].T  # row i against every j >= i0
        np.clip(g, 0, top, out=g)  # rounding below 0, and anything past hi into the last bin
        np.sqrt(g, out=g)
        idx = g.astype(np.intp)  # bincount's own index type: no hidden converted copy
        for r in range(i1 - i0):  # j <= i (itself, and pairs counted from the other side): extra bin
            idx[r, : r + 1] = bins
        counts += np.bincount(idx.ravel(), minlength=bins + 1)[:bins]
    return counts


def nearest(
    xq: np.ndarray, xr: np.ndarray, exclude: np.ndarray | None = None, max_elems: int = BLOCK_BYTES // 4
) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``xq``: the distance to, and index of, its nearest row of ``xr``.

    ``exclude[i]`` is a row of ``xr`` that query ``i`` must skip (itself), or -1. Rows with no candidate
    get ``inf`` and -1. Blocked over queries and references: at most ``max_elems`` distances at a time.
    """
    q, r = len(xq), len(xr)
    best = np.full(q, np.inf, dtype=np.float32)
    arg = np.full(q, -1, dtype=np.int64)
    if q == 0 or r == 0:
        return best, arg
    xq = np.ascontiguousarray(xq, dtype=np.float32)
    xr = np.ascontiguousarray(xr, dtype=np.float32)
    # One GEMM gives |b|² - 2a·b (the squared distance less the query's own norm): [-2a, 1]·[b, |b|²]
    left = np.hstack([xq * np.float32(-2), np.ones((q, 1), np.float32)])
    right = np.hstack([xr, _sq_norms(xr)[:, None]])
    cols = min(r, max_elems)
    rows = max(1, max_elems // cols)
    for c0 in range(0, r, cols):
        c1 = min(r, c0 + cols)
        right_t = right[c0:c1].T
        for i0 in range(0, q, rows):
            i1 = min(q, i0 + rows)
            g = left[i0:i1] @ right_t
            if exclude is not None:
                ex = exclude[i0:i1]
                hit = np.nonzero((ex >= c0) & (ex < c1))[0]
                g[hit, ex[hit] - c0] = np.inf
            j = g.argmin(axis=1)
            v = g[np.arange(i1 - i0), j]
            better = v < best[i0:i1]
            best[i0:i1][better] = v[better]
            arg[i0:i1][better] = j[better] + c0
    found = arg >= 0
    dist = np.full(q, np.inf, dtype=np.float32)
    dist[found] = np.sqrt(np.maximum(best[found] + _sq_norms(xq)[found], 0))
    return dist, arg


@dataclass
class NNStat:
    """Nearest-neighbour distances inside one set of ``n`` points, for ``queries`` of them."""

    n: int
    distances: np.ndarray
    exact: bool

    def summary(self) -> dict[str, Any]:
        """JSON figures (None where the set has fewer than two points)."""
        d = self.distances
        ok = d.size > 0
        return {
            "n": self.n,
            "queries": int(d.size),
            "exact": self.exact,
            "mean": float(d.mean()) if ok else None,
            "median": float(np.median(d)) if ok else None,
            "min": float(d.min()) if ok else None,
        }


def set_nn(x: np.ndarray, budget: int, rng: np.random.Generator, max_elems: int) -> NNStat:
    """Distance of each point of ``x`` to its nearest other point.

    A seeded sample of queries (each still exact, against the whole set) when ``len(x)²`` exceeds
    ``budget`` distances.
    """
    s = len(x)
    if s < 2:
        return NNStat(n=s, distances=np.zeros(0, np.float32), exact=True)
    q = s if s * s <= budget else max(1, budget // s)
    qidx = seeded_subset(s, q, rng)
    d, _ = nearest(x[qidx], x, exclude=qidx, max_elems=max_elems)
    return NNStat(n=s, distances=d, exact=q == s)


# ---------------------------------------------------------------------------------------------- statistics


@dataclass
class Statistics:
    """Everything the report shows about the embeddings, plus what the plots need."""

    space: str
    memory_gb: float
    max_points: int
    bin_edges: np.ndarray
    hist_input: np.ndarray
    input_points: int
    n_input: int
    hist_selection: np.ndarray
    selection_points: int
    n_selected: int
    nn: dict[str, NNStat]
    coverage_radius: float | None
    coverage_exact: bool
    coverage_queries: np.ndarray  # embedding rows whose nearest selected row was computed
    nearest_selected_dist: np.ndarray
    nearest_selected_row: np.ndarray  # embedding row of the nearest selected sample, per query
    pca: np.ndarray
    pca_explained: list[float]
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The figures for ``report.json`` (histograms included, arrays of points not)."""
        return {
            "space": self.space,
            "memory_requirement_in_GB": self.memory_gb,
            "max_points": self.max_points,
            "distance_histogram": {
                "bin_edges": [round(float(e), 6) for e in self.bin_edges],
                "input": {
                    "counts": self.hist_input.tolist(),
                    "points": self.input_points,
                    "of": self.n_input,
                    "subsampled": self.input_points < self.n_input,
                },
                "selection": {
                    "counts": self.hist_selection.tolist(),
                    "points": self.selection_points,
                    "of": self.n_selected,
                    "subsampled": self.selection_points < self.n_selected,
                },
            },
            "nearest_neighbour": {k: v.summary() for k, v in self.nn.items()},
            "coverage_radius": {
                "value": self.coverage_radius,
                "exact": self.coverage_exact,
                "queries": int(self.coverage_queries.size),
            },
            "pca_explained_variance": self.pca_explained,
            "seconds": round(self.seconds, 3),
        }


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Project rows onto the two main principal axes (numpy only); returns points and variance ratios."""
    n, d = x.shape
    if n == 0:
        return np.zeros((0, 2), np.float32), [0.0, 0.0]
    xc = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64)
    w, v = np.linalg.eigh(xc.T @ xc)
    order = np.argsort(w)[::-1][:2]
    axes = v[:, order]
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])  # deterministic sign
    axes = axes * np.where(signs == 0, 1, signs)
    pts = np.zeros((n, 2), np.float32)
    pts[:, : axes.shape[1]] = xc @ axes
    total = float(w.sum())
    ratios = [float(w[i] / total) if total > 0 else 0.0 for i in order] + [0.0] * (2 - len(order))
    return pts, ratios


def compute_statistics(x: np.ndarray, selected: np.ndarray, memory_gb: float, space: str) -> Statistics:
    """All report figures for embeddings ``x`` (the space the selection used) and selected rows."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(SEED)
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    selected = np.asarray(selected, dtype=np.int64)
    k = len(selected)
    mp = max_points(memory_gb)
    budget = mp * mp
    elems = block_elems(memory_gb)

    if space == "normalized":
        hi = 2.0
    else:  # |a - b| <= |a - c| + |b - c|: twice the largest distance to the mean bounds every pair
        hi = float(2 * np.sqrt(_sq_norms(x - x.mean(axis=0)).max())) if n else 1.0
    hi = hi if hi > 0 else 1.0
    edges = np.linspace(0.0, hi, HIST_BINS + 1)
    in_idx = seeded_subset(n, mp, rng)
    sel_idx = selected[seeded_subset(k, mp, rng)]
    hist_in = pair_histogram(x[in_idx], HIST_BINS, hi, elems)
    hist_sel = pair_histogram(x[sel_idx], HIST_BINS, hi, elems)

    random_rows = np.sort(rng.choice(n, size=k, replace=False)) if 0 < k <= n else selected
    nn = {
        "selection": set_nn(x[selected], budget, rng, elems),
        "random_subset": set_nn(x[random_rows], budget, rng, elems),
        "input": set_nn(x, budget, rng, elems),
    }

    mask = np.ones(n, dtype=bool)
    mask[selected] = False
    removed = np.nonzero(mask)[0]
    queries = (
        removed
        if len(removed) * max(k, 1) <= budget
        else removed[seeded_subset(len(removed), max(1, budget // k), rng)]
    )
    d, j = nearest(x[queries], x[selected], max_elems=elems)
    coverage = (float(d.max()) if d.size else 0.0) if k else None  # nothing selected: nothing covered
    pts, ratios = pca_2d(x)
    return Statistics(
        space=space,
        memory_gb=float(memory_gb),
        max_points=mp,
        bin_edges=edges,
        hist_input=hist_in,
        input_points=len(in_idx),
        n_input=n,
        hist_selection=hist_sel,
        selection_points=len(sel_idx),
        n_selected=k,
        nn=nn,
        coverage_radius=coverage,
        coverage_exact=len(queries) == len(removed),
        coverage_queries=queries,
        nearest_selected_dist=d,
        nearest_selected_row=selected[j] if k else j,
        pca=pts,
        pca_explained=ratios,
        seconds=time.perf_counter() - t0,
    )


def example_pairs(stats: Statistics, n_pairs: int) -> list[dict[str, Any]]:
    """Removed samples next to their nearest retained one.

    Half the most redundant (closest), half the least covered (farthest). Rows are embedding rows;
    names are filled in by the caller.
    """
    q = stats.coverage_queries
    if n_pairs <= 0 or q.size == 0 or stats.n_selected == 0:
        return []
    order = np.argsort(stats.nearest_selected_dist, kind="stable")
    if q.size <= n_pairs:
        half = (q.size + 1) // 2
        close, far = order[:half], order[half:][::-1]
    else:
        close, far = order[: n_pairs // 2], order[::-1][: n_pairs - n_pairs // 2]
    out = []
    for kind, picks in (("closest", close), ("farthest", far)):
        for i in picks:
            out.append(
                {
                    "kind": kind,
                    "removed_row": int(q[i]),
                    "retained_row": int(stats.nearest_selected_row[i]),
                    "distance": float(stats.nearest_selected_dist[i]),
                }
            )
    return out


def video_timelines(status: dict[str, str]) -> list[dict[str, Any]]:
    """Per video (frames named as the spec's frame names): each frame's index and what became of it."""
    videos: dict[str, list[tuple[int, str]]] = {}
    for name, st in status.items():
        m = FRAME_RE.match(name)
        if m:
            videos.setdefault(f"{m['stem']}.{m['ext']}", []).append((int(m["frame"]), st))
    out = []
    for video in sorted(videos):
        frames = sorted(videos[video])
        out.append(
            {
                "video": video,
                "frames": len(frames),
                "selected": [f for f, s in frames if s == "selected"],
                "status": frames,
            }
        )
    return out


# ---------------------------------------------------------------------------------------------- plots


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # Agg on this figure only: no global backend, no pyplot state
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _figure(w: float, h: float) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), layout="constrained")
    return fig


def _style(ax: Any) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(True, color="#e2e8f0", linewidth=0.6)
    ax.set_axisbelow(True)


def plot_histogram(
    stats: Statistics, which: str, min_distance: float | None, shared_ymax: float | None = None
) -> bytes:
    """Log-scale pairwise-distance histogram of the input ("before") or the selection ("after")."""
    before = which == "input"
    counts = stats.hist_input if before else stats.hist_selection
    pts, of = (stats.input_points, stats.n_input) if before else (stats.selection_points, stats.n_selected)
    fig = _figure(6.2, 3.4)
    ax = fig.add_subplot()
    _style(ax)
    e = stats.bin_edges
    last = int(np.nonzero(stats.hist_input + stats.hist_selection)[0].max(initial=0)) + 1
    colour = COLORS["input"] if before else COLORS["selected"]
    if counts.sum():
        ax.stairs(counts[:last], e[: last + 1], fill=True, color=colour, alpha=0.85)
        ax.set_yscale("log")
        if shared_ymax:
            ax.set_ylim(0.8, shared_ymax * 1.5)
    else:
        ax.text(
            0.5, 0.5, "fewer than two samples: no pairs", ha="center", va="center", transform=ax.transAxes
        )
    ax.set_xlim(0, e[last] if last < len(e) else e[-1])
    if min_distance is not None:
        ax.axvline(min_distance, color=COLORS["marker"], linestyle="--", linewidth=1.4)
        ax.text(
            min_distance,
            1.0,
            f" min_distance={min_distance:g}",
            color=COLORS["marker"],
            fontsize=8,
            va="top",
            ha="left",
            transform=ax.get_xaxis_transform(),
        )
    title = "Before: all embedded samples" if before else "After: selected samples"
    ax.set_title(f"{title} ({of:,})", fontsize=11, loc="left")
    ax.set_xlabel(f"pairwise distance ({stats.space} embeddings)")
    ax.set_ylabel("pairs (log scale)")
    if pts < of:
        note = (
            f"seeded subsample of {pts:,} of {of:,} samples: memory_requirement_in_GB="
            f"{stats.memory_gb:g} caps the matrix at {stats.max_points:,}²"
        )
        ax.text(
            0.99,
            0.97,
            note,
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=7.5,
            color="#b45309",
            bbox={"boxstyle": "round,pad=0.3", "fc": "#fffbeb", "ec": "#f59e0b", "lw": 0.8},
        )
    return _png(fig)


def plot_balance(det: dict[str, Any]) -> bytes:
    """BALANCE: each class's share of the input, of the selection (datapool included) and the target."""
    classes = list(det.get("classes") or [])
    x = np.arange(len(classes))
    fig = _figure(6.2, 3.0)
    ax = fig.add_subplot()
    _style(ax)
    width = 0.27
    for k, (key, label, colour) in enumerate(
        (
            ("share_input", "input", COLORS["input"]),
            ("share_selected", "selection", COLORS["selected"]),
            ("target", "target", COLORS["marker"]),
        )
    ):
        values = [float(v) for v in det.get(key) or [0.0] * len(classes)]
        ax.bar(x + (k - 1) * width, values, width, label=label, color=colour, alpha=0.9 if k < 2 else 0.5)
    ax.set_xticks(x, [c if len(c) <= 14 else c[:13] + "…" for c in classes], rotation=30, ha="right")
    ax.set_ylabel("share")
    ax.set_title(f"Class balance: {det.get('label', '')}", fontsize=11, loc="left")
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def plot_values(det: dict[str, Any]) -> bytes:
    """WEIGHTS / THRESHOLD / TYPICALITY / SIMILARITY: the input's values vs the selection's."""
    h = det.get("histogram") or {}
    edges = np.asarray(h.get("edges") or [0.0, 1.0], dtype=np.float64)
    fig = _figure(6.2, 2.8)
    ax = fig.add_subplot()
    _style(ax)
    for key, label, colour in (
        ("input", "input", COLORS["input"]),
        ("selected", "selection", COLORS["selected"]),
    ):
        counts = np.asarray(h.get(key) or np.zeros(len(edges) - 1), dtype=np.float64)
        total = counts.sum()
        if total:
            ax.stairs(
                counts / total,
                edges,
                fill=key == "input",
                color=colour,
                alpha=0.6 if key == "input" else 1,
                label=f"{label} ({int(total):,})",
                linewidth=1.6,
            )
    what = {"TYPICALITY": "typicality", "SIMILARITY": "distance to the nearest query"}.get(
        str(det.get("strategy")), "value"
    )
    ax.set_xlabel(what)
    ax.set_ylabel("share of samples")
    ax.set_title(det.get("label", ""), fontsize=11, loc="left")
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def strategy_sections(strategies: list[dict[str, Any]], plots: dict[str, bytes]) -> list[dict[str, Any]]:
    """One report section per selection strategy (``plots`` gains their figures)."""
    out: list[dict[str, Any]] = []
    for det in strategies:
        sec = dict(det)
        name = f"strategy_{int(det.get('entry', len(out)))}"
        if det.get("classes"):
            plots[f"{name}_balance.png"] = plot_balance(det)
            sec["plot"] = f"{name}_balance"
        elif det.get("histogram"):
            plots[f"{name}_values.png"] = plot_values(det)
            sec["plot"] = f"{name}_values"
        out.append(sec)
    return out


def plot_pick_distances(pick: np.ndarray, min_distance: float | None) -> bytes:
    """Distance of each coreset pick to those before it: the curve the selection walked down."""
    fig = _figure(6.2, 3.0)
    ax = fig.add_subplot()
    _style(ax)
    order = np.arange(1, len(pick) + 1)
    ok = np.isfinite(pick)
    ax.plot(
        order[ok], pick[ok], color=COLORS["selected"], linewidth=1.5, marker="." if ok.sum() < 80 else None
    )
    if min_distance is not None:
        ax.axhline(
            min_distance,
            color=COLORS["marker"],
            linestyle="--",
            linewidth=1.2,
            label=f"min_distance={min_distance:g}",
        )
        ax.legend(frameon=False, fontsize=8)
    ax.set_title("Distance of each pick to the samples picked before it", fontsize=11, loc="left")
    ax.set_xlabel("pick order")
    ax.set_ylabel("distance")
    return _png(fig)


def plot_nn(stats: Statistics) -> bytes:
    """Nearest-neighbour distance distributions: selection vs an equally sized random subset vs input."""
    fig = _figure(6.2, 3.2)
    ax = fig.add_subplot()
    _style(ax)
    series = [
        ("input", "input", COLORS["input"]),
        ("random_subset", "random subset", COLORS["random"]),
        ("selection", "selection", COLORS["selected"]),
    ]
    all_d = np.concatenate([stats.nn[k].distances for k, _, _ in series])
    if all_d.size:
        hi = float(all_d.max()) or 1.0
        edges = np.linspace(0, hi * 1.02, 50)
        for key, label, colour in series:
            d = stats.nn[key].distances
            if d.size:
                h, _ = np.histogram(d, bins=edges)
                ax.stairs(
                    h / d.size, edges, color=colour, linewidth=1.8, label=f"{label} (mean {d.mean():.3f})"
                )
        ax.legend(frameon=False, fontsize=8)
    ax.set_title("Distance to the nearest other sample in the same set", fontsize=11, loc="left")
    ax.set_xlabel("nearest-neighbour distance")
    ax.set_ylabel("fraction of samples")
    return _png(fig)


def plot_pca(stats: Statistics, selected: np.ndarray) -> tuple[bytes, str]:
    """2-D PCA view of the embeddings with the selected samples highlighted; returns (png, note)."""
    rng = np.random.default_rng(SEED)
    n = len(stats.pca)
    mask = np.ones(n, dtype=bool)
    mask[selected] = False
    rest = np.nonzero(mask)[0]
    shown_rest = rest[seeded_subset(len(rest), MAX_SCATTER, rng)]
    shown_sel = selected[seeded_subset(len(selected), MAX_SCATTER, rng)]
    fig = _figure(6.2, 5.0)
    ax = fig.add_subplot()
    _style(ax)
    size = 14 if n < 2000 else 4
    p = stats.pca
    ax.scatter(
        p[shown_rest, 0],
        p[shown_rest, 1],
        s=size,
        c=COLORS["removed"],
        alpha=0.6,
        linewidths=0,
        label=f"not selected ({len(rest):,})",
        rasterized=True,
    )
    ax.scatter(
        p[shown_sel, 0],
        p[shown_sel, 1],
        s=size * 2.2,
        c=COLORS["selected"],
        alpha=0.95,
        linewidths=0.4,
        edgecolors="white",
        label=f"selected ({len(selected):,})",
        rasterized=True,
    )
    ax.legend(frameon=False, fontsize=8, loc="best", markerscale=1.5)
    ex = stats.pca_explained
    ax.set_xlabel(f"PC 1 ({ex[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({ex[1]:.0%} of variance)")
    ax.set_title("Embeddings, first two principal components", fontsize=11, loc="left")
    note = ""
    if len(shown_rest) < len(rest) or len(shown_sel) < len(selected):
        note = f"seeded subsample of at most {MAX_SCATTER:,} points per group drawn"
    return _png(fig), note


def plot_examples(pairs: list[dict[str, Any]], thumbs: dict[str, Any]) -> bytes:
    """Removed (top) above its nearest retained sample (bottom), with their distance."""
    per_row = min(6, max(1, len(pairs)))
    bands = math.ceil(len(pairs) / per_row)
    fig = _figure(1.75 * per_row, 3.9 * bands)
    grid = fig.add_gridspec(2 * bands, per_row)
    for i, p in enumerate(pairs):
        band, col = divmod(i, per_row)
        for r, (key, label) in enumerate((("removed", "removed"), ("retained", "kept"))):
            ax = fig.add_subplot(grid[2 * band + r, col])
            ax.set_xticks([])
            ax.set_yticks([])
            img = thumbs.get(p[key])
            if img is not None:
                ax.imshow(np.asarray(img))
            else:
                ax.text(
                    0.5, 0.5, "not readable", ha="center", va="center", fontsize=7, transform=ax.transAxes
                )
            name = p[key] if len(p[key]) <= 22 else "…" + p[key][-21:]
            ax.set_title(f"{label}: {name}", fontsize=6.5)
            if r == 1:
                ax.set_xlabel(f"distance {p['distance']:.3f} ({p['kind']})", fontsize=7.5)
            colour = COLORS["removed"] if r == 0 else COLORS["selected"]
            for s in ax.spines.values():
                s.set_edgecolor(colour)
                s.set_linewidth(2)
    return _png(fig)


def plot_timelines(videos: list[dict[str, Any]]) -> bytes:
    """One row per video: every frame (thin grey), selected frames (blue), duplicates/corrupt marked."""
    shown = videos[:MAX_VIDEOS]
    height = 0.9 + 0.42 * len(shown)
    fig = _figure(7.5, height)
    ax = fig.add_subplot()
    ax.spines[["top", "right", "left"]].set_visible(False)
    labelled: set[str] = set()
    styles = (("removed", 0.6, 0.5), ("duplicate", 1.0, 0.5), ("corrupt", 1.2, 0.7), ("selected", 1.6, 0.8))
    for row, v in enumerate(shown):
        y = len(shown) - 1 - row
        by: dict[str, list[int]] = {}
        for f, st in v["status"]:
            by.setdefault(st, []).append(f)
        for st, lw, h in styles:
            if by.get(st):
                label = "_nolegend_" if st in labelled else st  # one legend entry per status
                labelled.add(st)
                ax.vlines(by[st], y - h / 2, y + h / 2, color=COLORS[st], linewidth=lw, label=label)
    ax.set_yticks(range(len(shown)), [v["video"] for v in reversed(shown)], fontsize=7.5)
    ax.set_xlabel("frame index")
    ax.set_title("Frames selected over time, per video", fontsize=11, loc="left")
    ax.legend(frameon=False, fontsize=7.5, ncol=4, loc="lower right", bbox_to_anchor=(1, 1.0 + 0.05 / height))
    return _png(fig)


# ---------------------------------------------------------------------------------------------- HTML


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _thumbnail(root: str, name: str) -> Any:
    """A small RGB PIL image of one input sample, or None if it cannot be read now."""
    try:
        img = image.load_image(filelist.sample_uri(root, name), name)
    except (CorruptFileError, OSError) as exc:
        log.warning("report: no thumbnail for %s: %s", name, exc)
        return None
    img.thumbnail((THUMB_PX, THUMB_PX))
    return img


def _jpeg_uri(img: Any) -> str:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=82)
    return _data_uri(buf.getvalue(), "image/jpeg")


def render_html(context: dict[str, Any]) -> str:
    """Render the one report template (autoescaped) with ``context``."""
    from importlib import resources

    import jinja2

    text = resources.files("kurate.outputs").joinpath("templates", TEMPLATE).read_text(encoding="utf-8")
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["num"] = lambda v, digits=3: "–" if v is None else f"{v:,.{digits}f}"
    env.filters["secs"] = _fmt_seconds
    env.filters["basename"] = lambda n: str(n).rsplit("/", 1)[-1]
    env.filters["dirname"] = lambda n: str(n).rsplit("/", 1)[0] + "/" if "/" in str(n) else ""
    return env.from_string(text).render(**context)


def _fmt_seconds(s: Any) -> str:
    if s is None:
        return "–"
    s = float(s)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {s % 60:02.0f} s"


def _weights_warning(meta: dict[str, Any]) -> list[str]:
    source = str(meta.get("source") or "")
    if source.startswith("random initialisation"):
        return [
            f"Embedded with a {source}: no checkpoint and no local pretrained weights. Distances reflect "
            "colours and textures, not content; set checkpoint= for a real curation."
        ]
    return []


def _describe_model(meta: dict[str, Any]) -> str:
    model = meta.get("model") or {}
    if not model:
        return "—"
    parts = [str(model.get("name", "?"))]
    for key in ("num_ftrs", "width", "out_dim"):
        if key in model:
            parts.append(f"{key} {model[key]}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------- entry point


@dataclass
class Lists:
    """The run's partition, as export computed it."""

    corrupt_rows: list[tuple[str, str]]
    duplicates: list[str]
    removed: list[str]
    sampled: list[str]


def provenance(inputs: RunInputs, run_dir: str) -> dict[str, Any]:
    """What it takes to reproduce the run: versions, model, weights and their hash, where the data was."""
    meta = inputs.emb_meta
    return {
        "kurate_version": __version__,
        "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "input": inputs.files.root,
        "run_directory": run_dir,
        "model": _describe_model(meta),
        "weights": meta.get("source"),
        "checkpoint": meta.get("checkpoint"),
        "checkpoint_sha256": meta.get("checkpoint_sha256"),
        "embedding_dim": meta.get(
            "dim", int(inputs.embeddings.shape[1]) if inputs.embeddings.ndim == 2 else 0
        ),
        "input_size": meta.get("input_size"),
        "device": meta.get("device"),
        "images_per_second": meta.get("images_per_second"),
        "compute_efficiency": meta.get("compute_efficiency"),
    }


def build(
    run_dir: str,
    inputs: RunInputs,
    config: dict[str, Any],
    summary: dict[str, Any],
    lists: Lists,
) -> dict[str, Any]:
    """Compute the report, write ``report.html`` and ``plots/``; return what export adds to report.json.

    ``upload_report=False`` publishes nothing but ``report.json`` (it marks the run complete): counts,
    provenance and durations, without the distance statistics, plots or HTML (not computed at all).
    """
    t0 = time.perf_counter()
    out: dict[str, Any] = {
        "provenance": provenance(inputs, run_dir),
        "phases": {k: dict(v) for k, v in inputs.phases.items()},
        "report_files": None,
    }
    if not config.get("upload_report", True):
        log.info("upload_report=False: report.json only (no report.html, plots or distance statistics)")
        return out

    x = np.asarray(inputs.embeddings, dtype=np.float32)
    normalized = bool(inputs.selection.extra.get("normalized", True))
    if normalized and len(x):
        x = normalize(x)
    pos = {n: i for i, n in enumerate(inputs.emb_names)}
    sel_names = list(inputs.selection.names)  # pick order
    selected = np.array([pos[n] for n in sel_names if n in pos], dtype=np.int64)
    if len(selected) != len(sel_names):
        raise KurateError("internal error: a selected sample has no embedding")
    memory_gb = float(config.get("memory_requirement_in_GB", 2.0))
    stats = compute_statistics(x, selected, memory_gb, "normalized" if normalized else "raw")
    names = inputs.emb_names
    pairs = example_pairs(stats, int(config.get("n_example_images", 6)))
    for p in pairs:
        p["removed"], p["retained"] = names[p.pop("removed_row")], names[p.pop("retained_row")]

    status = {n: "corrupt" for n, _ in lists.corrupt_rows}
    status.update({n: "duplicate" for n in lists.duplicates})
    status.update({n: "removed" for n in lists.removed})
    status.update({n: "selected" for n in lists.sampled})
    videos = video_timelines(status) if config.get("show_video_sampling_timeline", True) else []

    out["statistics"] = stats.to_json()
    out["examples"] = pairs
    out["video_timelines"] = [{k: v[k] for k in ("video", "frames", "selected")} for v in videos]
    far = None
    if stats.n_selected and stats.coverage_queries.size:  # the input sample that sets the coverage radius
        far = names[int(stats.coverage_queries[int(np.argmax(stats.nearest_selected_dist))])]
    out["statistics"]["coverage_radius"]["farthest_sample"] = far

    try:
        import jinja2  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError as exc:
        log.warning(
            "report: %s; install kurate[report] for report.html and plots (report.json has the figures)", exc
        )
        return out

    min_d = (summary.get("selection") or {}).get("min_distance")
    min_d = None if min_d in (None, -1) else float(min_d)
    ymax = float(max(stats.hist_input.max(initial=0), stats.hist_selection.max(initial=0)))
    plots: dict[str, bytes] = {
        "distance_distr_before.png": plot_histogram(stats, "input", min_d, ymax),
        "distance_distr_after.png": plot_histogram(stats, "selection", min_d, ymax),
        "nn_distances.png": plot_nn(stats),
    }
    pick = np.array([_float(v) for v in inputs.selection.columns.get("pick_distance", [])], dtype=np.float64)
    if np.isfinite(pick).sum() >= 2:
        plots["pick_distances.png"] = plot_pick_distances(pick, min_d)
    pca_png, pca_note = plot_pca(stats, selected)
    plots["embedding_pca.png"] = pca_png
    thumbs: dict[str, Any] = {}
    ol = config.get("object_level") or {}
    if ol:  # the samples are crops: cut them from their images
        wanted = {p[key] for p in pairs for key in ("removed", "retained")}
        thumbs = objects.thumbnails(inputs, float(ol.get("padding", 0.0)), wanted, THUMB_PX)
    for p in pairs:
        for key in ("removed", "retained"):
            if p[key] not in thumbs:
                thumbs[p[key]] = _thumbnail(inputs.files.root, p[key])
    if pairs:
        plots["examples.png"] = plot_examples(pairs, thumbs)
    if videos:
        plots["video_timeline.png"] = plot_timelines(videos)
    strategies = strategy_sections(
        list(((summary.get("selection") or {}).get("strategies") or {}).get("strategies") or []), plots
    )
    for fname, data in plots.items():
        storage.write_bytes(storage.join(run_dir, PLOTS_DIR, fname), data)

    shown = [dict(p) for p in pairs]  # report.json keeps names and distances, the HTML gets thumbnails too
    for p in shown:
        for key in ("removed", "retained"):
            img = thumbs.get(p[key])
            p[f"{key}_src"] = _jpeg_uri(img) if img is not None else None

    durations = dict(summary.get("phase_durations_s") or {})
    durations["report"] = round(time.perf_counter() - t0, 3)  # up to the HTML, which takes milliseconds
    out["phase_durations_s"] = durations
    context = _context(
        run_dir, inputs, config, summary, lists, stats, out, plots, shown, videos, pca_note, min_d
    )
    context["strategies"] = strategies
    context["strategy_source"] = ((summary.get("selection") or {}).get("strategies") or {}).get("source", "")
    context["metadata"] = summary.get("metadata")
    storage.write_text(storage.join(run_dir, REPORT_HTML), render_html(context))
    out["report_files"] = {"html": REPORT_HTML, "plots": [f"{PLOTS_DIR}/{p}" for p in plots]}
    log.info("report: %s (%.1f s)", storage.join(run_dir, REPORT_HTML), time.perf_counter() - t0)
    return out


def _float(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        return math.nan


def _context(
    run_dir: str,
    inputs: RunInputs,
    config: dict[str, Any],
    summary: dict[str, Any],
    lists: Lists,
    stats: Statistics,
    out: dict[str, Any],
    plots: dict[str, bytes],
    pairs: list[dict[str, Any]],
    videos: list[dict[str, Any]],
    pca_note: str,
    min_d: float | None,
) -> dict[str, Any]:
    counts = summary["counts"]
    total = max(1, int(counts["available"]))
    partition = [
        {
            "key": k,
            "label": label,
            "count": int(counts[k]),
            "pct": 100.0 * int(counts[k]) / total,
            "colour": COLORS[colour],
            "href": f"filenames/{fname}",
        }
        for k, label, colour, fname in (
            ("selected", "selected", "selected", "sampled_filenames.txt"),
            ("removed", "removed", "removed", "removed_filenames.txt"),
            ("duplicate", "exact duplicates", "duplicate", "duplicate_filenames.txt"),
            ("corrupt", "corrupt", "corrupt", "corrupt_filenames.txt"),
        )
    ]
    phases = []
    for name, seconds in out["phase_durations_s"].items():
        info = out["phases"].get(name, {})
        phases.append({"name": name, "seconds": seconds, "cached": bool(info.get("cached", False))})
    longest = max([float(p["seconds"] or 0) for p in phases] + [1e-9])
    for p in phases:
        p["pct"] = 100.0 * float(p["seconds"] or 0) / longest
    total_s = sum(float(p["seconds"] or 0) for p in phases if not p["cached"])
    corrupt = [{"name": n, "reason": r} for n, r in lists.corrupt_rows[:MAX_TABLE_ROWS]]
    nn_rows = []
    for key, label in (
        ("selection", "Selection"),
        ("random_subset", "Random subset, same size (seeded)"),
        ("input", "All embedded samples"),
    ):
        s = stats.nn[key].summary()
        s["label"] = label
        s["key"] = key
        nn_rows.append(s)
    sel = {k: summary.get("selection", {}).get(k) for k in SELECTION_KEYS}
    ignored = summary.get("ignored") or {}
    n_emb = max(1, int(counts["embedded"]))
    return {
        "title": f"kurate report · {run_dir.rstrip('/').rsplit('/', 1)[-1]}",
        "run_dir": run_dir,
        "summary": summary,
        "counts": counts,
        "partition": partition,
        "selected_pct": 100.0 * int(summary["selection"].get("selected", counts["selected"])) / n_emb,
        "selection": sel,
        "scorer": sel.get("scorer") or {"active": False, "reason": "not recorded"},
        "pretagging": summary.get("pretagging") or {"active": False, "reason": "not recorded"},
        "objects": summary.get("objects") or {},
        "warnings": [*summary.get("warnings", []), *_weights_warning(inputs.emb_meta)],
        "ignored": {k: ignored.get(k, 0) for k in ("other_extensions", "videos")},
        "phases": phases,
        "total_seconds": total_s,
        "provenance": out["provenance"],
        "stats": stats.to_json(),
        "min_distance": min_d,
        "plots": {k.rsplit(".", 1)[0]: _data_uri(v, "image/png") for k, v in plots.items()},
        "hist_note": stats.input_points < stats.n_input or stats.selection_points < stats.n_selected,
        "pairs_closest": [p for p in pairs if p["kind"] == "closest"],
        "pairs_farthest": [p for p in pairs if p["kind"] == "farthest"],
        "n_example_images": int(config.get("n_example_images", 6)),
        "nn_rows": nn_rows,
        "coverage": out["statistics"]["coverage_radius"],
        "pca_note": pca_note,
        "videos": videos[:MAX_VIDEOS],
        "n_videos": len(videos),
        "show_videos": bool(config.get("show_video_sampling_timeline", True)),
        "corrupt": corrupt,
        "n_corrupt": len(lists.corrupt_rows),
        "config_yaml": str(config.get("config_yaml") or ""),
        "max_table_rows": MAX_TABLE_ROWS,
    }
