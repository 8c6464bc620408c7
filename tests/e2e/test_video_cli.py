"""End to end: the `kurate` command on a folder of videos (one broken, frames damaged) and a photo."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.e2e.test_cli import FAST, run_kurate
from tests.video_helpers import make_video, truncate

LENGTHS = {"a.mp4": 40, "clips/b.avi": 30, "clips/c.webm": 24, "d.mkv": 20}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-video")
    root = tmp / "in"
    make_video(root / "a.mp4", "libx264", n=40, seed=1, rotation=-90)
    make_video(root / "clips" / "b.avi", "mjpeg", n=30, seed=2, dead={7: ("grey", 0.5)}, static_from=25)
    make_video(root / "clips" / "c.webm", "libvpx-vp9", n=24, seed=3)
    make_video(root / "d.mkv", "mpeg4", n=20, seed=4)
    make_video(root / "e.avi", "mjpeg", n=20, seed=5)
    truncate(root / "e.avi", 0.55)  # its header still says 20 frames
    shutil.copy(root / "a.mp4", root / "broken.mp4")
    truncate(root / "broken.mp4", 0.5)  # no index left: cannot be opened
    Image.fromarray(np.full((24, 32, 3), 200, np.uint8)).save(root / "photo.png")
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    return tmp, root, before


def _lists(run_dir: Path) -> dict[str, list[str]]:
    return {
        k: (run_dir / "filenames" / f"{k}_filenames.txt").read_text().splitlines()
        for k in ("corrupt", "duplicate", "removed", "sampled")
    }


@pytest.fixture(scope="module")
def checked_run(videos):
    tmp, root, _ = videos
    proc = run_kurate(
        f"input_dir={root}",
        f"output_dir={tmp / 'out'}",
        "run_directory=frames",
        "stopping_condition.n_samples=12",
        "datasource.use_frame_count_metadata=True",
        "dump_dataset=True",
        "output_image_size=16",
        *FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "out" / "frames"


def test_frames_are_samples_and_lists_partition_them(checked_run):
    lists = _lists(checked_run)
    everything = sorted(n for v in lists.values() for n in v)
    e_frames = [f"e-{i:02d}-avi.png" for i in range(20)]
    expected = ["photo.png", "broken.mp4", *e_frames]
    for v, n in LENGTHS.items():
        stem, ext = v.rsplit(".", 1)
        expected += [f"{stem}-{i:0{len(str(n))}}-{ext}.png" for i in range(n)]
    assert everything == sorted(expected)
    report = json.loads((checked_run / "report.json").read_text())
    assert report["counts"]["available"] == len(expected)
    assert report["counts"]["selected"] == len(lists["sampled"]) == 12
    # corrupt: the unopenable video by its file name, the grey frame and e.avi's missing tail by frame name
    with open(checked_run / "filenames" / "corrupt_reasons.csv", newline="") as fh:
        reasons = {r["filename"]: r["reason"] for r in csv.DictReader(fh)}
    assert reasons["broken.mp4"].startswith("cannot open video")
    assert reasons["clips/b-07-avi.png"].startswith("corruption score 0.50")
    cut = [n for n in e_frames if n in reasons]  # the partly written frame, then the missing ones
    assert cut == e_frames[20 - len(cut) :] and all(reasons[n].startswith("frame ") for n in cut)
    missing = [n for n in cut if reasons[n].startswith("frame missing")]
    assert len(missing) >= len(cut) - 1
    assert set(reasons) == {"broken.mp4", "clips/b-07-avi.png", *cut}
    assert lists["duplicate"] == [f"clips/b-{i}-avi.png" for i in range(26, 30)]  # the static tail
    mm = report["videos"]["frame_count_mismatches"]
    assert mm == [{"video": "e.avi", "metadata": 20, "decoded": 20 - len(missing)}]


def test_selected_frames_are_dumped_upright(checked_run):
    sampled = _lists(checked_run)["sampled"]
    out = checked_run / "data" / "sampled"
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert files == sorted(sampled)
    for n in sampled:
        with Image.open(checked_run / "data" / "sampled" / n) as im:
            if n.startswith("a-"):  # stored 64x48 with a -90 rotation: upright is portrait
                assert im.size == (16, 21)
            elif n != "photo.png":
                assert im.size == (21, 16)


def test_timeline_data_for_the_report(checked_run):
    tl = json.loads((checked_run / "data" / "video_timeline.json").read_text())
    assert tl["format"] == "kurate.video_timeline/1"
    by = {v["video"]: v for v in tl["videos"]}
    assert sorted(by) == sorted([*LENGTHS, "broken.mp4", "e.avi"])
    sampled = set(_lists(checked_run)["sampled"])
    listed = {s["name"] for v in tl["videos"] for s in v["selected"]}
    assert listed == {n for n in sampled if n != "photo.png"}
    for v in tl["videos"]:
        times = [s["time_s"] for s in v["selected"]]
        assert times == sorted(times) and all(t is not None and 0 <= t < 2 for t in times)
        assert sum(v["counts"].values()) == (v["frame_count"] or 1)


def test_embeddings_csv_names_frames(checked_run):
    with open(checked_run / "data" / "embeddings.csv", newline="") as fh:
        names = [r[0] for r in list(csv.reader(fh))[1:]]
    lists = _lists(checked_run)
    assert sorted(names) == sorted(lists["sampled"] + lists["removed"])


def test_sequences_end_to_end(videos):
    tmp, root, before = videos
    proc = run_kurate(
        f"input_dir={root}",
        f"output_dir={tmp / 'out'}",
        "run_directory=seq",
        "stopping_condition.n_samples=0.1",
        "selected_sequence_length=5",
        "enable_corruptness_check=False",
        "remove_exact_duplicates=False",
        *FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp / "out" / "seq"
    lists = _lists(run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    total = report["counts"]["available"]
    assert len(lists["sampled"]) == (total // 10) // 5 * 5 > 0
    blocks: dict[tuple[str, int], list[int]] = {}
    for n in lists["sampled"]:
        stem, idx, ext = n[: -len(".png")].rsplit("-", 2)
        blocks.setdefault((f"{stem}.{ext}", int(idx) // 5), []).append(int(idx))
    assert all(sorted(f) == list(range(b * 5, b * 5 + 5)) for (_, b), f in blocks.items())
    assert "photo.png" in lists["removed"]
    # counted (not metadata): e.avi holds fewer frames than its header says; recorded and warned
    assert any(
        m["video"] == "e.avi" and m["metadata"] == 20 for m in report["videos"]["frame_count_mismatches"]
    )
    assert "container metadata says 20 frames" in proc.stdout + proc.stderr
    after = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert after == before  # the input is only read
