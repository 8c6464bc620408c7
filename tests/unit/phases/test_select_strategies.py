"""The select phase with selection_config / method=coral: Lightly's documented examples run unchanged."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from kurate.errors import ConfigError
from kurate.io import embeddings_io, filelist
from kurate.io import predictions as preds_io
from kurate.io.filelist import FileList
from kurate.phases.select import run_select
from kurate.selection import coreset as cs
from tests.lightly_selection_examples import EXAMPLES

N = 150
CLASSES = ["car", "bicycle", "bus", "motorcycle", "person", "train", "truck"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Embeddings, a clean list with computed metadata, a Lightly predictions folder, custom metadata."""
    root = tmp_path_factory.mktemp("sel")
    rng = np.random.default_rng(0)
    names = [f"img_{i:03d}.png" for i in range(N)]
    x = rng.standard_normal((N, 8)).astype(np.float32)
    emb = str(root / "emb")
    embeddings_io.write_embeddings(emb, names, x, {"root": str(root / "in")})
    files = str(root / "files")
    filelist.write(files, FileList(root=str(root / "in"), names=names, extra={"input_count": N}))
    sharp = rng.uniform(0, 60, N)
    clean = str(root / "clean")
    filelist.write(
        clean,
        FileList(
            root=str(root / "in"),
            names=names,
            columns={"sha256": ["0"] * N, "lightly.sharpness": [f"{v:.6g}" for v in sharp]},
        ),
    )
    # Lightly's predictions layout with one detection task
    task = root / "lightly" / ".lightly" / "predictions"
    (task / "my_object_detection_task").mkdir(parents=True)
    (task / "tasks.json").write_text(json.dumps(["my_object_detection_task"]))
    (task / "my_object_detection_task" / "schema.json").write_text(
        json.dumps(
            {
                "task_type": "object-detection",
                "categories": [{"id": i, "name": c} for i, c in enumerate(CLASSES)],
            }
        )
    )
    for i, n in enumerate(names):
        if i % 10 == 9:
            continue  # some samples have no prediction file
        k = int(rng.integers(0, 4))
        preds = []
        for _ in range(k):
            p = rng.dirichlet(np.ones(len(CLASSES)))
            preds.append(
                {
                    "category_id": int(p.argmax()),
                    "bbox": [1, 2, 3, 4],
                    "score": float(p.max()),
                    "probabilities": [float(v) for v in p],
                }
            )
        (task / "my_object_detection_task" / n.replace(".png", ".json")).write_text(
            json.dumps({"file_name": n, "predictions": preds})
        )
    # pretagging artifact (task lightly_pretagging)
    pre = str(root / "pretag")
    recs = [[{"category_id": int(rng.integers(0, 7)), "bbox": [0, 0, 1, 1], "score": 0.9}] for _ in names]
    preds_io.write(
        pre,
        names,
        recs,
        {"source": "test", "categories": [{"id": i, "name": c} for i, c in enumerate(CLASSES)]},
    )
    # custom metadata, lightly CLI's COCO-like format
    weather = rng.choice(["sunny", "cloudy", "rainy", "foggy"], size=N, p=[0.5, 0.3, 0.15, 0.05])
    meta = {
        "images": [{"id": i, "file_name": n} for i, n in enumerate(names)],
        "metadata": [{"image_id": i, "weather": {"description": str(w)}} for i, w in enumerate(weather)],
    }
    (root / "custom.json").write_text(json.dumps(meta))
    # a query set: Lightly embeddings csv of 3 rows and a tag file naming two of them
    q = rng.standard_normal((3, 8)).astype(np.float32)
    embeddings_io.write_lightly_csv(str(root / "query.csv"), ["q0.png", "q1.png", "q2.png"], q, [0, 0, 0])
    (root / "query_tag.txt").write_text("q0.png\nq2.png\n")
    return {
        "root": root,
        "names": names,
        "x": x,
        "emb": emb,
        "files": files,
        "clean": clean,
        "pre": pre,
        "sharp": sharp,
        "weather": weather,
        "query": q,
        "sources": {"predictions": str(task), "custom_metadata": str(root / "custom.json")},
    }


def _run(world, tmp_path, selection_config, **config):
    cfg = {"selection_config": selection_config, "selection_sources": world["sources"], "seed": 1, **config}
    out = str(tmp_path / "sel")
    extra = run_select(world["emb"], world["files"], out, cfg, world["pre"], world["clean"])
    return filelist.read(out), extra


@pytest.mark.parametrize("source, config", EXAMPLES, ids=[s for s, _ in EXAMPLES])
def test_documented_examples_run_unchanged(world, tmp_path, source, config):
    config = copy.deepcopy(config)
    for e in config["strategies"]:  # the docs' placeholders, nothing else
        if e["input"].get("dataset_id") == "DATASET_ID_OF_THE_QUERY_IMAGES":
            e["input"]["dataset_id"] = str(world["root"] / "query.csv")
            e["input"]["tag_name"] = str(world["root"] / "query_tag.txt")
    sel, extra = _run(world, tmp_path, config)
    want = config.get("n_samples") or round(config.get("proportion_samples", 0) * N)
    assert 0 < len(sel.names) <= min(want, N)
    assert len(set(sel.names)) == len(sel.names)
    info = extra["strategies"]
    assert [s["strategy"] for s in info["strategies"]] == [
        e["strategy"]["type"] for e in config["strategies"]
    ]
    assert info["config"]["strategies"][0]["input"]["type"] == config["strategies"][0]["input"]["type"]


def test_threshold_example_keeps_only_sharp_samples(world, tmp_path):
    cfg = next(c for s, c in EXAMPLES if "'Metadata Thresholding'" in s)
    sel, extra = _run(world, tmp_path, cfg)
    sharp = dict(zip(world["names"], world["sharp"], strict=True))
    assert all(sharp[n] > 20 for n in sel.names)
    assert len(sel.names) == min(100, int((world["sharp"] > 20).sum()))
    assert extra["strategies"]["strategies"][0]["removed"] == int((world["sharp"] <= 20).sum())


def test_metadata_balancing_example_moves_toward_its_target(world, tmp_path):
    cfg = copy.deepcopy(next(c for s, c in EXAMPLES if "'Metadata Balancing'" in s))
    cfg["n_samples"] = 40
    sel, extra = _run(world, tmp_path, cfg)
    w = dict(zip(world["names"], world["weather"], strict=True))
    got = [w[n] for n in sel.names]
    assert got.count("sunny") == 8 and got.count("cloudy") == 16  # 20% and 40% of 40
    det = extra["strategies"]["strategies"][0]
    assert det["classes"] == ["sunny", "cloudy", "(other classes)"]
    assert det["share_selected"][:2] == [0.2, 0.4]


def test_similarity_example_picks_the_nearest_to_the_tagged_queries(world, tmp_path):
    cfg = copy.deepcopy(next(c for s, c in EXAMPLES if "'Similarity Search'" in s))
    cfg["n_samples"] = 10
    cfg["strategies"][0]["input"].update(
        dataset_id=str(world["root"] / "query.csv"), tag_name=str(world["root"] / "query_tag.txt")
    )
    sel, _ = _run(world, tmp_path, cfg)
    x = cs.normalize(world["x"])
    q = cs.normalize(world["query"][[0, 2]])
    d = np.sqrt(((x[:, None, :] - q[None]) ** 2).sum(-1)).min(axis=1)
    nearest = {world["names"][i] for i in np.argsort(d, kind="stable")[:10]}
    assert set(sel.names) == nearest


def test_coral_weights_the_coreset_with_the_task_scores(world, tmp_path):
    out = str(tmp_path / "sel")
    cfg = {
        "method": "coral",
        "stopping_condition": {"n_samples": 12, "min_distance": -1},
        "active_learning": {"task_name": "my_object_detection_task", "score_name": "uncertainty_entropy"},
        "selection_sources": world["sources"],
    }
    extra = run_select(world["emb"], world["files"], out, cfg, world["pre"], world["clean"])
    via_config, _ = _run(
        world, tmp_path / "b", next(c for s, c in EXAMPLES if "(CORAL)" in s) | {"n_samples": 12}
    )
    assert filelist.read(out).names == via_config.names  # coral == DIVERSITY x SCORES/WEIGHTS
    assert extra["method"] == "coral"
    plain = cs.coreset(cs.normalize(world["x"]), 12)
    assert [world["names"][i] for i in plain] != via_config.names  # the scores changed the picks


def test_coral_from_an_embeddings_column(world, tmp_path):
    names, x = world["names"], world["x"]
    path = tmp_path / "embeddings_al.csv"
    embeddings_io.write_lightly_csv(str(path), names, x, [0] * N)
    lines = path.read_text().splitlines()
    al = np.linspace(0, 1, N)
    lines = [lines[0] + ",al_score"] + [row + f",{al[i]}" for i, row in enumerate(lines[1:])]
    path.write_text("\r\n".join(lines) + "\r\n")
    out = str(tmp_path / "sel")
    cfg = {
        "method": "coral",
        "stopping_condition": {"n_samples": 5, "min_distance": -1},
        "active_learning_score_column_name": "al_score",
        "selection_sources": {"embeddings_file": str(path)},
    }
    run_select(world["emb"], world["files"], out, cfg, None, None)
    w = al**1.0
    ref = cs.coreset(cs.normalize(x), 5, weights=w / w.max())
    assert filelist.read(out).names == [names[i] for i in ref]
    with pytest.raises(ConfigError, match="active_learning_score_column_name"):
        run_select(
            world["emb"],
            world["files"],
            out,
            {**cfg, "active_learning_score_column_name": "nope"},
            None,
            None,
        )


def test_the_datapool_counts_for_balance_and_diversity(tmp_path):
    from kurate.selection import runner
    from kurate.selection import spec as sp

    root = tmp_path / ".lightly" / "predictions"
    (root / "t").mkdir(parents=True)
    (root / "tasks.json").write_text('["t"]')
    (root / "t" / "schema.json").write_text(
        json.dumps(
            {
                "task_type": "object-detection",
                "categories": [{"id": 0, "name": "car"}, {"id": 1, "name": "bicycle"}],
            }
        )
    )
    names = [f"n{i}.png" for i in range(6)]
    classes = [0, 0, 0, 1, 1, 1]
    pool_names = ["p0.png", "p1.png"]
    for n, c in [*zip(names, classes, strict=True), *((p, 0) for p in pool_names)]:
        objs = [{"category_id": c, "bbox": [0, 0, 1, 1], "score": 1.0}] * (2 if n in pool_names else 1)
        (root / "t" / n.replace(".png", ".json")).write_text(
            json.dumps({"file_name": n, "predictions": objs})
        )
    spec = sp.parse(
        {
            "n_samples": 4,
            "strategies": [
                {
                    "input": {"type": "PREDICTIONS", "task": "t", "name": "CLASS_DISTRIBUTION"},
                    "strategy": {"type": "BALANCE", "target": {"car": 0.5, "bicycle": 0.5}},
                }
            ],
        }
    )
    x = np.eye(6, dtype=np.float32)
    cfg = {"selection_sources": {"predictions": str(root)}}
    alone, _ = runner.run(spec, names, x, 4, cfg, pool=None)
    assert sorted(classes[i] for i in alone.indices) == [0, 0, 1, 1]
    pooled, info = runner.run(
        spec, names, x, 4, cfg, pool=np.zeros((2, 6), np.float32), pool_names=pool_names
    )
    assert [classes[i] for i in pooled.indices] == [1, 1, 1, 0]  # the datapool already holds 4 cars
    assert info["strategies"][0]["share_datapool"][:2] == [1.0, 0.0]
    # DIVERSITY keeps away from the datapool: the sample equal to a datapool point comes last
    div = sp.parse(
        {"n_samples": 6, "strategies": [{"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}}]}
    )
    out, _ = runner.run(div, names, x, 6, {}, pool=x[[2]], pool_names=["p.png"])
    assert int(out.indices[-1]) == 2 and np.isclose(out.pick_distances[-1], 0.0)
