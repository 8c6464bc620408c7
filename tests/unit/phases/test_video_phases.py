"""Video frames through embed (streamed), select (sequences) and export (dumped frames, timeline)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kurate.io import embeddings_io, filelist
from kurate.media import quality, video
from kurate.models.embedding import embed_files
from kurate.outputs import export
from kurate.phases.ingest import list_input
from kurate.phases.select import run_select
from tests.video_helpers import make_video, truncate

COMMON = dict(input_size=32, num_ftrs=16, pre_trained=False, progress=False, batch_size=5)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("vids") / "in"
    make_video(root / "a.mp4", "libx264", n=18, seed=1)
    make_video(root / "b" / "c.webm", "libvpx-vp9", n=11, seed=2, rotation=-90)
    make_video(root / "t.avi", "mjpeg", n=16, seed=3)
    truncate(root / "t.avi", 0.5)  # the header still says 16 frames
    (root / "x.mp4").write_bytes(b"junk")
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(root / "img.png")
    return root


def test_embed_streams_frames_in_list_order_for_any_worker_count(folder):
    files = list_input(str(folder), use_frame_count_metadata=True)
    checked = quality.check_files(files, False, False, progress=False)  # frames are not decoded
    assert checked.corrupt.names == ["x.mp4"]  # but a video ingest could not open is corrupt anyway
    clean = checked.clean
    r0 = embed_files(clean, num_workers=0, **COMMON)
    r2 = embed_files(clean, num_workers=2, **COMMON)
    assert r0.names == r2.names
    np.testing.assert_allclose(r0.embeddings, r2.embeddings, atol=1e-5)
    assert r0.failed == r2.failed
    failed = dict(r0.failed)
    held = video.probe(str(folder / "t.avi"), "t.avi", False).count
    assert sorted(failed) == [video.frame_name("t.avi", i, 16) for i in range(held, 16)]
    assert all(failed[video.frame_name("t.avi", i, 16)].startswith("frame missing") for i in range(held, 16))
    order = [n for n in clean.names if n not in failed]
    assert r0.names == order  # list order: a's frames, b/c's frames, img.png, t's frames


def test_a_frame_embeds_like_the_same_picture_as_an_image(folder, tmp_path):
    with video.open_video(str(folder / "b" / "c.webm")) as container:
        frame = next(video.iter_frames(container)).frame
        Image.fromarray(video.to_rgb(frame)).save(tmp_path / "f.png")  # upright, full size
    files = list_input(str(folder))
    rows = [i for i, v in enumerate(files.column("video")) if v == "b/c.webm"][:1]
    frame_list = files.subset(rows)
    ours = embed_files(frame_list, num_workers=0, **COMMON).embeddings[0]
    img = embed_files(filelist.FileList(str(tmp_path), ["f.png"]), num_workers=0, **COMMON).embeddings[0]
    cos = float(ours @ img / np.linalg.norm(ours) / np.linalg.norm(img))
    assert cos > 0.98  # same picture; only the resampling filter differs (swscale vs PIL)


# --------------------------------------------------------------------------- sequences


def _artifacts(tmp_path, lengths, images=1):
    names, video_col, frame_col = [], [], []
    for v, n in lengths.items():
        for i in range(n):
            names.append(video.frame_name(v, i, n))
            video_col.append(v)
            frame_col.append(str(i))
    for k in range(images):
        names.append(f"img{k}.png")
        video_col.append("")
        frame_col.append("")
    files = filelist.FileList(
        "/in", names, {"video": video_col, "frame": frame_col, "time_s": [""] * len(names)},
        extra={"input_count": len(names)},
    )  # fmt: skip
    filelist.write(str(tmp_path / "files"), files)
    x = np.random.default_rng(0).normal(size=(len(names), 8)).astype(np.float32)
    embeddings_io.write_embeddings(str(tmp_path / "emb"), names, x, {"root": "/in"})
    return files


@pytest.mark.parametrize("method", ["coreset", "random"])
@pytest.mark.parametrize("n_samples, blocks", [(8, 2), (4, 1), (0.5, 2), (0.1, 1), (100, 3)])
def test_sequences_select_whole_blocks(tmp_path, method, n_samples, blocks):
    files = _artifacts(tmp_path, {"a.mp4": 10, "sub/b.mov": 7})  # blocks: a 0-3, a 4-7, b 0-3
    cfg = {"stopping_condition": {"n_samples": n_samples}, "selected_sequence_length": 4, "method": method}
    extra = run_select(str(tmp_path / "emb"), str(tmp_path / "files"), str(tmp_path / "sel"), cfg)
    sel = filelist.read(str(tmp_path / "sel")).names
    assert len(sel) == 4 * blocks and extra["selected"] == 4 * blocks
    cols = zip(files.names, files.column("video"), files.column("frame"), strict=True)
    where = {n: (v, int(f)) for n, v, f in cols if v}
    got = {}
    for n in sel:
        v, f = where[n]  # images are never selected
        got.setdefault((v, f // 4), []).append(f)
    assert all(sorted(fs) == list(range(b * 4, b * 4 + 4)) for (_, b), fs in got.items())
    assert set(got) <= {("a.mp4", 0), ("a.mp4", 1), ("sub/b.mov", 0)}
    assert extra["blocks_available"] == 3 and extra["images_not_selectable"] == 1
    assert extra["frames_in_incomplete_blocks"] == 2 + 3


def test_sequences_without_complete_blocks_is_an_error(tmp_path):
    from kurate.errors import SelectionError

    _artifacts(tmp_path, {"a.mp4": 3})
    cfg = {"stopping_condition": {"n_samples": 4}, "selected_sequence_length": 4}
    with pytest.raises(SelectionError, match="selected_sequence_length=4"):
        run_select(str(tmp_path / "emb"), str(tmp_path / "files"), str(tmp_path / "sel"), cfg)


# --------------------------------------------------------------------------- export


def test_dump_writes_selected_frames_upright_resized(folder, tmp_path):
    files = list_input(str(folder))
    frames = export._frame_locations(files)
    names = [video.frame_name("a.mp4", 17, 18), video.frame_name("b/c.webm", 3, 11), "img.png"]
    failed = export.dump_samples(str(folder), names, str(tmp_path / "out"), [20, 10], "jpg", frames=frames)
    assert failed == []
    for n in names:
        with Image.open(tmp_path / "out" / export.dumped_name(n, "jpg")) as im:
            assert im.format == "JPEG" and im.size == (10, 20)
    failed = export.dump_samples(str(folder), names[1:2], str(tmp_path / "keep"), -1, "png", frames=frames)
    with Image.open(tmp_path / "keep" / names[1]) as im:
        assert im.size == (48, 64)  # stored 64x48 with a -90 display rotation: upright is portrait
        with video.open_video(str(folder / "b" / "c.webm")) as container:
            fourth = [df for df in video.iter_frames(container, stop_after=3)][3].frame
            np.testing.assert_array_equal(np.asarray(im), video.to_rgb(fourth))


def test_timeline_lists_selected_frames_with_times(folder):
    files = list_input(str(folder))
    sel = {video.frame_name("a.mp4", 5, 18), video.frame_name("a.mp4", 2, 18)}
    status = {n: ("sampled" if n in sel else "removed") for n in files.names}
    status["x.mp4"] = "corrupt"
    tl = video.sampling_timeline(
        files.column("video"), files.column("frame"), files.column("time_s"), files.names, status,
        files.extra["videos"],
    )  # fmt: skip
    assert tl["format"] == "kurate.video_timeline/1"
    by = {v["video"]: v for v in tl["videos"]}
    assert sorted(by) == ["a.mp4", "b/c.webm", "t.avi", "x.mp4"]
    a = by["a.mp4"]
    assert [s["frame"] for s in a["selected"]] == [2, 5]
    assert [s["time_s"] for s in a["selected"]] == pytest.approx([0.08, 0.2])
    assert a["counts"] == {"sampled": 2, "removed": 16, "corrupt": 0, "duplicate": 0}
    assert a["frame_count"] == 18 and a["fps"] == 25.0
    assert by["x.mp4"]["error"] and by["x.mp4"]["counts"]["corrupt"] == 1


def test_check_gives_every_frame_its_computed_metadata_from_its_decode(folder):
    from kurate.media import metadata

    files = list_input(str(folder), use_frame_count_metadata=True)
    checked = quality.check_files(files, True, False, progress=False, workers=1)
    cols = checked.clean.columns
    rows = {n: i for i, n in enumerate(checked.clean.names)}
    with video.open_video(
        str(folder / "b" / "c.webm")
    ) as container:  # rotated: metadata of the upright frame
        first = next(video.iter_frames(container))
    want = metadata.image_metadata(video.to_rgb(first.frame))
    row = rows[video.frame_name("b/c.webm", 0, 11)]
    for key in ("lightly.width", "lightly.height", "lightly.sharpness", "lightly.luminance"):
        assert float(cols[key][row]) == pytest.approx(want[key], rel=1e-5), key
    assert (float(cols["lightly.width"][row]), float(cols["lightly.height"][row])) == (
        want["lightly.width"],
        want["lightly.height"],
    )
    assert cols["lightly.sizeInBytes"][row] == ""  # a frame is not a file
    assert float(cols["lightly.sizeInBytes"][rows["img.png"]]) == (folder / "img.png").stat().st_size
