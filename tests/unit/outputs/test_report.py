"""The report: blocked distance statistics against brute force, the memory cap, the files it writes."""

from __future__ import annotations

import json
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from kurate.io import timing
from kurate.io.filelist import FileList
from kurate.outputs import export, report
from kurate.selection.coreset import coreset_with_info, normalize
from tests.helpers import draw_image
from tests.report_data import clustered as _clustered
from tests.report_data import make_run_inputs


def _brute(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0))


@pytest.mark.parametrize("max_elems", [7, 64, 10_000])
def test_pair_histogram_counts_every_pair_once(max_elems):
    x = _clustered(41, d=5)
    d = _brute(x)[np.triu_indices(41, 1)]
    hi = float(d.max()) * 1.01
    want, _ = np.histogram(d, bins=20, range=(0, hi))
    got = report.pair_histogram(x, 20, hi, max_elems)
    assert got.sum() == 41 * 40 // 2
    # float32 distances may land in a neighbouring bin right at an edge: allow a handful
    assert np.abs(got - want).sum() <= 4
    assert np.abs(np.cumsum(got) - np.cumsum(want)).max() <= 2


@pytest.mark.parametrize("max_elems", [5, 37, 100_000])
def test_nearest_matches_brute_force_with_self_exclusion(max_elems):
    x = _clustered(30, d=6, seed=1)
    q = np.array([0, 3, 7, 29])
    dist, idx = report.nearest(x[q], x, exclude=q, max_elems=max_elems)
    full = _brute(x)[q]
    full[np.arange(4), q] = np.inf
    np.testing.assert_array_equal(idx, full.argmin(1))
    np.testing.assert_allclose(dist, full.min(1), rtol=1e-4, atol=1e-4)
    lone, none = report.nearest(x[:1], x[:1], exclude=np.array([0]))
    assert np.isinf(lone[0]) and none[0] == -1


def test_set_nn_samples_queries_only_beyond_the_budget():
    x = _clustered(50, d=4, seed=2)
    rng = np.random.default_rng(0)
    exact = report.set_nn(x, budget=2500, rng=rng, max_elems=100)
    full = _brute(x)
    np.fill_diagonal(full, np.inf)
    assert exact.exact and exact.distances.size == 50
    np.testing.assert_allclose(np.sort(exact.distances), np.sort(full.min(1)), atol=1e-4)
    sampled = report.set_nn(x, budget=500, rng=rng, max_elems=100)
    assert not sampled.exact and sampled.distances.size == 10  # 500 distances / 50 references
    for v in sampled.distances:  # each sampled query's distance is still its exact nearest neighbour's
        assert np.isclose(full.min(1), v, atol=1e-4).any()


def _selection(x: np.ndarray, k: int) -> np.ndarray:
    return coreset_with_info(normalize(x), n_samples=k).indices


def test_statistics_against_brute_force():
    x = normalize(_clustered(120, d=8, k=6, seed=3))
    res = coreset_with_info(x, n_samples=12)
    sel = res.indices
    st = report.compute_statistics(x, sel, memory_gb=2.0, space="normalized")
    full = _brute(x)
    rest = np.setdiff1d(np.arange(120), sel)
    cover = full[np.ix_(rest, sel)].min(1)
    assert st.coverage_exact and st.coverage_radius == pytest.approx(cover.max(), abs=1e-4)
    within = full[np.ix_(sel, sel)] + np.diag(np.full(12, np.inf))
    nn_sel = st.nn["selection"].summary()
    assert nn_sel["mean"] == pytest.approx(within.min(1).mean(), abs=1e-4)
    # farthest-first: the closest pair of the selection is the last pick's distance
    assert nn_sel["min"] == pytest.approx(float(res.pick_distances[-1]), abs=1e-4)
    # a coreset of clustered data is far more spread out than a random subset of the same size
    assert nn_sel["mean"] > 1.5 * st.nn["random_subset"].summary()["mean"]
    assert st.nn["input"].summary()["n"] == 120 and st.nn["random_subset"].summary()["n"] == 12
    assert st.hist_input.sum() == 120 * 119 // 2 and st.hist_selection.sum() == 12 * 11 // 2
    assert st.input_points == 120 and st.bin_edges[-1] == 2.0


def test_memory_cap_subsamples_and_bounds_peak_memory():
    n, d = 4000, 16
    x = normalize(_clustered(n, d=d, k=20, seed=4))
    sel = np.arange(0, n, 4)  # 1000 selected
    gb = 0.001  # ~1 MiB: at most 518 points' matrix
    m = report.max_points(gb)
    assert m * m * 4 <= gb * 2**30 < (m + 1) ** 2 * 4
    tracemalloc.start()
    st = report.compute_statistics(x, sel, memory_gb=gb, space="normalized")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert st.input_points == m and st.selection_points == m
    assert st.hist_input.sum() == m * (m - 1) // 2
    assert not st.nn["input"].exact and st.nn["input"].distances.size == m * m // n
    assert not st.coverage_exact and st.coverage_queries.size == m * m // 1000
    # working memory: a few blocks of at most the cap, plus copies of the (small) embeddings;
    # the full N x N float32 matrix would be 64 MB
    assert peak < 6 * gb * 2**30 + 8 * x.nbytes, peak
    js = st.to_json()
    assert js["distance_histogram"]["input"] == {**js["distance_histogram"]["input"], "subsampled": True}
    assert js["coverage_radius"]["exact"] is False


def test_example_pairs_are_closest_and_farthest_removed():
    x = normalize(_clustered(60, d=6, seed=5))
    sel = _selection(x, 6)
    st = report.compute_statistics(x, sel, 2.0, "normalized")
    pairs = report.example_pairs(st, 4)
    assert [p["kind"] for p in pairs] == ["closest", "closest", "farthest", "farthest"]
    full = _brute(x)
    rest = np.setdiff1d(np.arange(60), sel)
    nearest_d = full[np.ix_(rest, sel)].min(1)
    for p in pairs:
        assert p["removed_row"] not in set(sel) and p["retained_row"] in set(sel)
        assert p["distance"] == pytest.approx(full[p["removed_row"], p["retained_row"]], abs=1e-4)
    assert pairs[0]["distance"] == pytest.approx(nearest_d.min(), abs=1e-4)
    assert pairs[2]["distance"] == pytest.approx(nearest_d.max(), abs=1e-4)
    assert report.example_pairs(st, 0) == []


def test_pca_finds_the_main_axis():
    rng = np.random.default_rng(6)
    t = rng.standard_normal(500)
    x = np.stack([t, 2 * t, 0.01 * rng.standard_normal(500)], axis=1).astype(np.float32)
    pts, ratios = report.pca_2d(x)
    assert ratios[0] > 0.99 and sum(ratios) <= 1 + 1e-9
    assert abs(np.corrcoef(pts[:, 0], t)[0, 1]) > 0.999
    one, r1 = report.pca_2d(x[:, :1])
    assert one.shape == (500, 2) and r1[1] == 0.0


def test_video_timelines_from_frame_names():
    status = {
        "clips/a-003-mp4.png": "selected",
        "clips/a-001-mp4.png": "removed",
        "clips/a-002-mp4.png": "duplicate",
        "b-10-MOV.png": "selected",
        "still.png": "selected",
    }
    tl = report.video_timelines(status)
    assert [v["video"] for v in tl] == ["b.MOV", "clips/a.mp4"]
    assert tl[1]["frames"] == 3 and tl[1]["selected"] == [3]
    assert tl[1]["status"] == [(1, "removed"), (2, "duplicate"), (3, "selected")]


# ---------------------------------------------------------------------------------------------- files

CONFIG = {"config_yaml": "input_dir: /data\ntoken: '***'\n", "n_example_images": 4}


def test_export_writes_a_self_contained_report(tmp_path):
    inputs = make_run_inputs(tmp_path / "in")
    data = export.export_run(str(tmp_path / "run"), inputs, CONFIG)
    run = tmp_path / "run"
    saved = json.loads((run / "report.json").read_text())
    assert saved["counts"]["selected"] == 6 and saved["counts"] == data["counts"]
    assert saved["report_files"]["html"] == "report.html"
    for plot in (
        "distance_distr_before",
        "distance_distr_after",
        "embedding_pca",
        "examples",
        "nn_distances",
    ):
        png = (run / "plots" / f"{plot}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and f"plots/{plot}.png" in saved["report_files"]["plots"]
    assert saved["provenance"]["checkpoint_sha256"] == "ab" * 32
    assert set(saved["phase_durations_s"]) == {"ingest", "export", "report"}
    assert len(saved["examples"]) == 4 and "removed_src" not in saved["examples"][0]
    assert saved["statistics"]["distance_histogram"]["input"]["points"] == 40

    page = (run / "report.html").read_text()
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) >= 5 + 8 and all(s.startswith("data:image/") for s in srcs)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from anywhere
    assert "<b>" not in page.split("<body>", 1)[1].split("cannot decode image", 1)[1][:20]  # escaped
    assert "&lt;b&gt;" in page
    assert "ab" * 32 in page and "min_distance = 0.05" in page
    for section in (
        "summary",
        "distances",
        "examples",
        "diversity",
        "embedding",
        "corrupt",
        "provenance",
        "config",
    ):
        assert f'<section id="{section}">' in page
    assert '<section id="videos">' not in page  # no frames in this input


def test_video_frames_get_a_timeline(tmp_path):
    inputs = make_run_inputs(tmp_path / "in", videos=True)
    saved = export.export_run(str(tmp_path / "run"), inputs, CONFIG)
    assert saved["video_timelines"][0]["video"] == "clips/drive.mp4"
    assert saved["video_timelines"][0]["frames"] == 12
    assert (tmp_path / "run" / "plots" / "video_timeline.png").is_file()
    assert '<section id="videos">' in (tmp_path / "run" / "report.html").read_text()
    off = export.export_run(str(tmp_path / "run2"), inputs, {**CONFIG, "show_video_sampling_timeline": False})
    assert off["video_timelines"] == [] and not (tmp_path / "run2" / "plots" / "video_timeline.png").exists()


def test_upload_report_false_writes_only_report_json(tmp_path):
    inputs = make_run_inputs(tmp_path / "in", n=20, k=3)
    export.export_run(str(tmp_path / "run"), inputs, {**CONFIG, "upload_report": False})
    run = tmp_path / "run"
    saved = json.loads((run / "report.json").read_text())
    assert not (run / "report.html").exists() and not (run / "plots").exists()
    assert saved["report_files"] is None and "statistics" not in saved
    assert saved["counts"]["selected"] == 3 and saved["provenance"]["embedding_dim"] == 12


def test_small_memory_cap_is_said_on_the_report(tmp_path):
    inputs = make_run_inputs(tmp_path / "in", n=60, k=30)
    saved = export.export_run(str(tmp_path / "run"), inputs, {**CONFIG, "memory_requirement_in_GB": 1e-6})
    hist = saved["statistics"]["distance_histogram"]
    assert hist["input"]["subsampled"] and hist["input"]["points"] == report.max_points(1e-6) < 60
    assert "seeded random subsample" in (tmp_path / "run" / "report.html").read_text()


def test_timed_phases_write_phase_json_and_cache_is_flagged(tmp_path):
    @timing.timed("demo", "out_a", "out_b")
    def run_demo(inp: str, out_a: str, out_b: str) -> int:
        return 7

    assert run_demo("x", str(tmp_path / "a"), out_b=str(tmp_path / "b")) == 7
    a = timing.read(str(tmp_path / "a"))
    assert a is not None and a == timing.read(str(tmp_path / "b")) and a["phase"] == "demo"
    assert a["finished_at"] >= a["started_at"] and a["duration_s"] >= 0
    (tmp_path / "ing").mkdir()
    (tmp_path / "ing" / timing.PHASE_FILE).write_text(
        json.dumps(
            {
                "phase": "ingest",
                "started_at": a["finished_at"] + 5,
                "finished_at": a["finished_at"] + 6,
                "duration_s": 1.0,
            }
        )
    )
    got = timing.collect([str(tmp_path / "ing"), str(tmp_path / "a"), str(tmp_path / "missing")])
    assert got["demo"]["cached"] is True and got["ingest"]["cached"] is False
    with pytest.raises(TypeError):
        timing.timed("x", "nope")(run_demo)


def test_template_ships_as_package_data():
    from importlib import resources

    template = resources.files("kurate.outputs").joinpath("templates", report.TEMPLATE)
    assert "<!doctype html>" in template.read_text()
    pyproject = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    assert re.search(r'"kurate\.outputs"\s*=\s*\[[^\]]*"templates/\*\.j2"', pyproject)


def test_embed_records_the_checkpoint_hash_and_its_duration(tmp_path):
    import hashlib

    from kurate.io import embeddings_io, filelist
    from kurate.models.embedding import build_model, save_checkpoint
    from kurate.phases.embed import run_embed

    (tmp_path / "in").mkdir()
    for i in range(2):
        draw_image(i, size=40).save(tmp_path / "in" / f"{i}.png")
    filelist.write(str(tmp_path / "clean"), FileList(root=str(tmp_path / "in"), names=["0.png", "1.png"]))
    ckpt = tmp_path / "model.ckpt"
    save_checkpoint(str(ckpt), build_model("resnet-9", 0.125, 8, 16))
    lightly = {
        "model": {"name": "resnet-9", "width": 0.125, "num_ftrs": 8, "out_dim": 16},
        "collate": {"input_size": 32},
        "loader": {"batch_size": 2, "num_workers": 0},
    }
    run_embed(str(tmp_path / "clean"), str(tmp_path / "emb"), {"checkpoint": str(ckpt), "lightly": lightly})
    meta = embeddings_io.read_embeddings_meta(str(tmp_path / "emb"))
    assert meta["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert meta["checkpoint"] == str(ckpt)
    times = timing.read(str(tmp_path / "emb"))
    assert times is not None and times["phase"] == "embed" and times["duration_s"] > 0


def test_degenerate_selections_do_not_break_the_figures():
    x = normalize(clustered_small := _clustered(10, d=3, seed=8))
    none = report.compute_statistics(x, np.array([], dtype=np.int64), 2.0, "normalized")
    assert none.coverage_radius is None and report.example_pairs(none, 4) == []
    assert none.nn["selection"].summary()["mean"] is None and none.hist_selection.sum() == 0
    everything = report.compute_statistics(x, np.arange(10), 2.0, "normalized")
    assert everything.coverage_radius == 0.0 and report.example_pairs(everything, 4) == []
    one = report.compute_statistics(clustered_small[:1], np.array([0]), 2.0, "raw")
    assert one.nn["input"].summary()["n"] == 1 and one.pca.shape == (1, 2)
