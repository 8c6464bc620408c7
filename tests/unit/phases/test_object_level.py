"""Object-level selection (``object_level.*``) through the phases: every predicted box becomes a sample,
the padded crop, embedded (sharded or not) and selected like an image; the outputs name the crops as
Lightly did and keep the link to their image and box."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kurate.config.load import compose_config
from kurate.errors import ConfigError
from kurate.io import embeddings_io, filelist, sharding
from kurate.media import crops
from kurate.phases.check import run_check
from kurate.phases.embed import run_embed
from kurate.phases.export import run_export
from kurate.phases.ingest import run_ingest
from kurate.phases.pretag import run_pretag
from kurate.phases.select import run_select
from kurate.plan import make_plan
from tests.compile.test_argo import EMBED

CATS = [{"id": 0, "name": "car"}, {"id": 1, "name": "truck"}]


def _box(cid: int, x: float, y: float, w: float, h: float) -> dict:
    return {"category_id": cid, "bbox": [x, y, w, h], "score": 0.9}


def make_world(root: Path, task: str = "vehicles") -> dict[str, list[dict]]:
    """Six photos (noise, so every crop differs) and Lightly's predictions folder beside them."""
    rng = np.random.default_rng(5)
    preds: dict[str, list[dict]] = {}
    for i in range(6):
        name = f"{'sub/' if i % 2 else ''}img_{i}.{'png' if i % 3 else 'jpg'}"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(root / name, quality=95)
        preds[name] = [_box(j % 2, 4 + 9 * j, 3 + 4 * j, 14, 10) for j in range(i % 4)]
    preds["img_0.jpg"] = [_box(0, 0, 0, 0, 8), _box(1, 100, 100, 5, 5)]  # no width; outside the image
    base = root / ".lightly" / "predictions"
    (base / task).mkdir(parents=True)
    (base / "tasks.json").write_text(json.dumps([task]))
    (base / task / "schema.json").write_text(
        json.dumps({"task_type": "object-detection", "categories": CATS})
    )
    for name, ps in preds.items():
        target = base / task / (name.rsplit(".", 1)[0] + ".json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"file_name": name, "predictions": ps}))
    return preds


def _cfg(tmp: Path, *extra: str):
    return compose_config(
        [f"input_dir={tmp / 'in'}", f"output_dir={tmp / 'out'}", "stopping_condition.n_samples=0.5", *extra]
    )


def test_the_plan_finds_the_task_and_hands_each_phase_its_part(tmp_path):
    (tmp_path / "in").mkdir()
    make_world(tmp_path / "in")
    plan = make_plan(_cfg(tmp_path, "object_level.task_name=vehicles", "object_level.padding=0.25"))
    t = plan.task_configs
    assert t["pretag"]["objects"]["predictions"] == str(tmp_path / "in" / ".lightly" / "predictions")
    assert t["pretag"]["objects"]["categories"] == CATS and not t["pretag"]["pretagging"]
    assert t["embed"]["object_level"] == {"task_name": "vehicles", "padding": 0.25}
    assert t["select"]["object_level"] == {"task_name": "vehicles"}
    assert t["export"]["object_level"]["crop_dataset_name"] == "in-crops"  # Lightly: <dataset>-crops
    plain = make_plan(_cfg(tmp_path)).task_configs
    assert "object_level" not in plain["embed"] and "objects" not in plain["pretag"]


@pytest.mark.parametrize(
    ("extra", "key", "says"),
    [
        (["object_level.task_name=trucks"], "object_level.task_name", "no prediction task 'trucks'"),
        (["object_level.task_name=lightly_pretagging"], "object_level.task_name", "set pretagging=True"),
        (
            ["object_level.task_name=vehicles", "pretagging=True"],
            "object_level.task_name",
            "not this run's pretagging",
        ),
        (["object_level.task_name=vehicles", "datapool.name=p"], "object_level.task_name", "datapool"),
        (["object_level.padding=-0.1"], "object_level.padding", "from 0 to 10"),
        (["object_level.crop_dataset_name=a/b"], "object_level.crop_dataset_name", "a folder name"),
    ],
)
def test_what_object_level_refuses_at_start(tmp_path, extra, key, says):
    (tmp_path / "in").mkdir()
    make_world(tmp_path / "in")
    with pytest.raises(ConfigError) as err:
        make_plan(_cfg(tmp_path, *extra))
    assert err.value.key == key and says in str(err.value), str(err.value)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The phases in pipeline order on the world above (padding 0.2), embed sharded in 2."""
    tmp = tmp_path_factory.mktemp("objects")
    (tmp / "in").mkdir()
    preds = make_world(tmp / "in")
    plan = make_plan(
        _cfg(tmp, "object_level.task_name=vehicles", "object_level.padding=0.2", "run_directory=r")
    )
    t = plan.task_configs
    a = {k: str(tmp / "a" / k) for k in ("files", "clean", "corrupt", "dups", "pred", "emb", "sel")}
    run_ingest(a["files"], t["ingest"])
    run_check(a["files"], a["clean"], a["corrupt"], a["dups"], {**t["check"], "workers": 1})
    run_pretag(a["clean"], a["pred"], t["pretag"])
    embed_cfg = {**EMBED, "object_level": t["embed"]["object_level"]}
    shards = []
    for i in range(2):
        shards.append(str(tmp / "a" / f"shard{i}"))
        run_embed(a["clean"], shards[-1], embed_cfg, shard_index=i, shard_count=2, predictions_in=a["pred"])
    sharding.merge_embeddings(shards, a["emb"])
    run_embed(a["clean"], str(tmp / "a" / "whole"), embed_cfg, predictions_in=a["pred"])
    extra = run_select(a["emb"], a["files"], a["sel"], t["select"], a["pred"])
    export_cfg = {**t["export"], "n_example_images": 2}
    report = run_export(
        a["files"], a["clean"], a["corrupt"], a["dups"], a["emb"], a["sel"], export_cfg, a["pred"]
    )
    return tmp, a, preds, extra, report, Path(plan.run_dir)


def test_every_box_is_a_sample_named_as_lightly_names_crops(run):
    tmp, a, preds, *_ = run
    names, x, meta = embeddings_io.read_embeddings(a["emb"])
    expected = [
        f"{n.rsplit('.', 1)[0]}/{j}_{CATS[p['category_id']]['name']}.{n.rsplit('.', 1)[1]}"
        for n in sorted(preds)
        for j, p in enumerate(preds[n])
        if p["bbox"][2] > 0
    ]
    assert names == [e for e in expected if e != "img_0/1_truck.jpg"]  # outside its image: not cut
    assert meta["failed"] == [["img_0/1_truck.jpg", "the box lies outside its image"]]
    assert meta["object_level"]["crops"] == len(expected) == 8 and meta["object_level"]["empty_boxes"] == 1
    whole_names, whole_x, _ = embeddings_io.read_embeddings(str(tmp / "a" / "whole"))
    assert whole_names == names  # two shards give the unsharded result
    np.testing.assert_allclose(x, whole_x, atol=1e-5)
    assert len({tuple(np.round(v, 4)) for v in x}) == len(names)  # each crop is its own picture


def test_crops_are_selected_like_images_and_counted_as_objects(run):
    _, a, _, extra, report, _ = run
    sel = filelist.read(a["sel"])
    assert extra["input_count"] == 8 and len(sel.names) == 4  # 0.5 of the 8 crops, as Lightly counts objects
    parents = sorted({n.split("/")[-2] for n in sel.names})
    assert report["counts"]["selected"] == len(parents) and report["selection"]["selected"] == 4
    assert report["objects"]["crops"] == 8 and report["objects"]["sampled"] == 4
    assert report["objects"]["corrupt"] == 1 and report["objects"]["removed"] == 3


def test_outputs_keep_the_link_to_the_image_and_box(run):
    _, a, preds, _, report, run_dir = run
    rows = list(csv.DictReader((run_dir / "data" / "crops.csv").open(newline="")))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"sampled", "removed", "corrupt"}
    bad = next(r for r in rows if r["status"] == "corrupt")
    assert bad["filename"] == "img_0/1_truck.jpg" and bad["reason"] == "the box lies outside its image"
    for r in rows:
        p = preds[r["image"]][int(r["box_index"])]
        assert [float(r[k]) for k in ("x", "y", "width", "height")] == p["bbox"]
        assert CATS[int(r["category_id"])]["name"] == r["category"]
    sampled_crops = (run_dir / "filenames" / "sampled_crops.txt").read_text().split()
    assert sampled_crops == sorted(r["filename"] for r in rows if r["status"] == "sampled")
    images = (run_dir / "filenames" / "sampled_filenames.txt").read_text().split()
    assert images == sorted({r["image"] for r in rows if r["status"] == "sampled"})
    removed = (run_dir / "filenames" / "removed_filenames.txt").read_text().split()
    assert sorted(images + removed) == sorted(preds)  # the images are still partitioned
    # the crop dataset: each selected crop, cut from its upright image with Lightly's padding
    dataset = run_dir / "crops" / "in-crops"
    assert sorted(str(p.relative_to(dataset)) for p in dataset.rglob("*.*")) == sampled_crops
    for r in rows:
        if r["status"] != "sampled" or not r["filename"].endswith(".png"):
            continue  # PNG crops compare exactly (JPEG ones are re-encoded)
        with (
            Image.open(dataset / r["filename"]) as got,
            Image.open(run_dir.parent.parent / "in" / r["image"]) as img,
        ):
            box = crops.crop_box(
                [float(r[k]) for k in ("x", "y", "width", "height")], 0.2, img.width, img.height
            )
            assert np.array_equal(np.asarray(got), np.asarray(img.convert("RGB").crop(box)))
    emb_csv = (run_dir / "data" / "embeddings.csv").read_text().splitlines()
    assert emb_csv[1].split(",")[0] == "img_2/0_car.png"  # Lightly CSVs name the crops
    assert report["objects"]["crop_dataset"] == "crops/in-crops/"
    assert "object level" in (run_dir / "report.html").read_text()
