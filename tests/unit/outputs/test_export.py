"""Export library: the partition (embed failures count as corrupt), resizing, names, labels, completeness."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from kurate.errors import KurateError
from kurate.io import embeddings_io
from kurate.io.filelist import FileList
from kurate.outputs import export
from kurate.outputs.inputs import RunInputs
from tests.helpers import draw_image


def _inputs(root, emb_failed=()):
    names = ["a.png", "b.png", "c.png", "d.png", "e.png", "f.png"]
    for n in names:
        draw_image(ord(n[0]), size=40).resize((40, 20)).save(root / n)
    clean = ["a.png", "b.png", "c.png", "d.png"]
    embedded = [n for n in clean if n not in emb_failed]
    return RunInputs(
        files=FileList(root=str(root), names=names, extra={"input_count": 6}),
        clean=FileList(root=str(root), names=clean),
        corrupt=FileList(root=str(root), names=["e.png"], columns={"reason": ["cannot decode image: x"]}),
        duplicates=FileList(root=str(root), names=["f.png"], columns={"duplicate_of": ["a.png"]}),
        selection=FileList(
            root=str(root), names=["c.png", "a.png"], extra={"normalized": True, "method": "coreset"}
        ),
        emb_names=embedded,
        embeddings=np.arange(len(embedded) * 3, dtype=np.float32).reshape(-1, 3) + 1,
        emb_meta={"failed": [[n, "decode failed at embed"] for n in emb_failed]},
    )


def test_partition_with_embed_failures(tmp_path):
    (tmp_path / "in").mkdir()
    report = export.export_run(str(tmp_path / "run"), _inputs(tmp_path / "in", emb_failed=("d.png",)), {})
    lists = {
        k: (tmp_path / "run" / "filenames" / f"{k}_filenames.txt").read_text().splitlines()
        for k in ("corrupt", "duplicate", "removed", "sampled")
    }
    assert lists == {
        "corrupt": ["d.png", "e.png"],
        "duplicate": ["f.png"],
        "removed": ["b.png"],
        "sampled": ["a.png", "c.png"],
    }
    assert report["counts"]["corrupt"] == 2 and report["counts"]["embedded"] == 3
    with open(tmp_path / "run" / "filenames" / "corrupt_reasons.csv", newline="") as fh:
        assert {r["filename"]: r["reason"] for r in csv.DictReader(fh)}["d.png"] == "decode failed at embed"
    assert json.loads((tmp_path / "run" / "report.json").read_text())["counts"] == report["counts"]


def test_selected_embeddings_are_the_normalised_selected_rows(tmp_path):
    (tmp_path / "in").mkdir()
    inputs = _inputs(tmp_path / "in")
    export.export_run(str(tmp_path / "run"), inputs, {})
    with open(tmp_path / "run" / "data" / "selected_embeddings.csv", newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    assert [r[0] for r in rows] == ["a.png", "c.png"]
    v = np.array([float(x) for x in rows[1][1:-1]])
    want = inputs.embeddings[2] / np.linalg.norm(inputs.embeddings[2])
    np.testing.assert_allclose(v, want, rtol=1e-6)


def test_a_broken_partition_is_refused(tmp_path):
    (tmp_path / "in").mkdir()
    inputs = _inputs(tmp_path / "in")
    inputs.files.names.append("ghost.png")
    with pytest.raises(KurateError, match="partition"):
        export.export_run(str(tmp_path / "run"), inputs, {})
    assert not (tmp_path / "run" / "report.json").exists()


def test_complete_run_refused(tmp_path):
    (tmp_path / "in").mkdir()
    export.export_run(str(tmp_path / "run"), _inputs(tmp_path / "in"), {})
    assert export.is_complete(str(tmp_path / "run"))
    with pytest.raises(KurateError, match="complete"):
        export.export_run(str(tmp_path / "run"), _inputs(tmp_path / "in"), {})


@pytest.mark.parametrize("size, want", [(-1, (40, 20)), (10, (20, 10)), ([8, 12], (12, 8))])
def test_dump_resizes(tmp_path, size, want):
    (tmp_path / "in").mkdir()
    export.export_run(
        str(tmp_path / "run"),
        _inputs(tmp_path / "in"),
        {"dump_dataset": True, "output_image_size": size, "output_image_format": "jpg"},
    )
    for n in ("a", "c"):
        with Image.open(tmp_path / "run" / "data" / "sampled" / f"{n}.jpg") as im:
            assert im.size == want and im.format == "JPEG"


def test_dump_same_format_no_resize_copies_bytes(tmp_path):
    (tmp_path / "in").mkdir()
    export.export_run(str(tmp_path / "run"), _inputs(tmp_path / "in"), {"dump_dataset": True})
    assert (tmp_path / "run" / "data" / "sampled" / "a.png").read_bytes() == (
        tmp_path / "in" / "a.png"
    ).read_bytes()


def test_dumped_names_and_collisions(tmp_path):
    assert export.dumped_name("x/a.jpeg", "jpg") == "x/a.jpeg"
    assert export.dumped_name("x/a.JPG", "png") == "x/a.png"
    assert export.dumped_name("x/a.tif", "tiff") == "x/a.tif"
    (tmp_path / "in").mkdir()
    draw_image(1).save(tmp_path / "in" / "a.jpg")
    draw_image(2).save(tmp_path / "in" / "a.png")
    failed = export.dump_samples(str(tmp_path / "in"), ["a.jpg", "a.png"], str(tmp_path / "out"), -1, "png")
    assert failed == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg.png", "a.png"]


def test_labels_follow_top_level_folders():
    assert embeddings_io.labels_for(["b/x.png", "a/y.png", "a/z/w.png", "root.png"]) == [1, 0, 0, 0]


@pytest.mark.parametrize(
    "datapool",
    [None, {"location": "POOL", "version": 0, "enable_update": False, "upload_dataset": True}],
)
def test_upload_dataset_without_a_datapool_copies_the_selection_to_data_sampled(tmp_path, datapool, caplog):
    """Lightly uploaded the selection to its platform; with no datapool to take it (none, or one left
    untouched) it goes where dump_dataset puts it, and a warning says where. Never an error."""
    (tmp_path / "in").mkdir()
    config: dict = {"upload_dataset": True}
    if datapool:
        config["datapool"] = {**datapool, "location": str(tmp_path / "pool")}
    with caplog.at_level("WARNING"):
        report = export.export_run(str(tmp_path / "run"), _inputs(tmp_path / "in"), config)
    sampled = sorted(p.name for p in (tmp_path / "run" / "data" / "sampled").iterdir())
    assert sampled == ["a.png", "c.png"]
    where = str(tmp_path / "run" / "data" / "sampled")
    assert any("upload_dataset" in w and where in w for w in report["warnings"])
    assert any(where in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "pool" / "samples").exists()


def test_upload_dataset_off_writes_no_samples(tmp_path):
    (tmp_path / "in").mkdir()
    report = export.export_run(str(tmp_path / "run"), _inputs(tmp_path / "in"), {})
    assert not (tmp_path / "run" / "data" / "sampled").exists()
    assert not any("upload_dataset" in w for w in report["warnings"])


def test_a_dumped_name_moved_aside_by_a_collision_is_a_report_warning(tmp_path):
    """a.jpg and a.png both selected: a.jpg cannot be a.png (the other sample's); the report says where."""
    root = tmp_path / "in"
    root.mkdir()
    names = ["a.jpg", "a.png", "b.png"]
    for k, n in enumerate(names):
        draw_image(k, size=24).save(root / n, format="JPEG" if n.endswith(".jpg") else "PNG")
    files = FileList(root=str(root), names=names, extra={"input_count": 3})
    inputs = RunInputs(
        files=files,
        clean=FileList(root=str(root), names=names),
        corrupt=FileList(root=str(root), names=[], columns={"reason": []}),
        duplicates=FileList(root=str(root), names=[], columns={"duplicate_of": []}),
        selection=FileList(root=str(root), names=names, extra={"normalized": True, "method": "coreset"}),
        emb_names=names,
        embeddings=np.eye(3, dtype=np.float32),
        emb_meta={"failed": []},
    )
    report = export.export_run(str(tmp_path / "run"), inputs, {"dump_dataset": True})
    dumped = sorted(p.name for p in (tmp_path / "run" / "data" / "sampled").iterdir())
    assert dumped == ["a.jpg.png", "a.png", "b.png"]
    assert report["warnings"] == ["dumped a.jpg as data/sampled/a.jpg.png (a.png is another sample)"]
