"""Videos: frame names, counting, one-pass decoding, rotation, corruption score, damaged files."""

from __future__ import annotations

import shutil
import types

import numpy as np
import pytest

from kurate.errors import CorruptFileError
from kurate.media import quality, video
from kurate.phases.ingest import list_input
from tests.video_helpers import CODECS, make_video, scene_frame, truncate, zero_range

N = 40


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """One clean clip per codec/container, 40 frames of 64x48 in 3 scenes."""
    root = tmp_path_factory.mktemp("clips")
    return {
        f"{codec}.{ext}": make_video(root / f"{codec}.{ext}", codec, n=N, seed=i)
        for i, (codec, ext) in enumerate(CODECS)
    }


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "rel, count", [("clip.mp4", 9), ("clip.mp4", 10), ("sub/dir.v1/my.clip.MOV", 100), ("a/b.avi", 1234)]
)
def test_frame_names_are_lightlys(rel, count):
    from lightly.data._video import VideoDataset

    stub = types.SimpleNamespace(root="/data")
    name, fmt = VideoDataset._video_name_format(stub, f"/data/{rel}")
    for index in (0, 7, count - 1):
        expected = VideoDataset._format_filename(
            stub, video_name=name, frame_number=index, video_format=fmt, zero_padding=len(str(count))
        )
        assert video.frame_name(rel, index, count) == expected


# --------------------------------------------------------------------------- counting and decoding


@pytest.mark.parametrize("key", [f"{c}.{e}" for c, e in CODECS])
def test_probe_counts_frames_both_ways(clips, key):
    counted = video.probe(str(clips[key]), key, use_metadata=False)
    assert counted.error == "" and counted.count == N and counted.counted == N
    assert counted.count_source == "counted" and counted.mismatch() is None
    assert counted.times is not None and counted.times[0] == 0 and counted.times[1] == pytest.approx(1 / 25)
    meta = video.probe(str(clips[key]), key, use_metadata=True)
    assert meta.count == N
    if key.endswith(("mp4", "avi")):  # these containers store a frame count
        assert meta.count_source == "metadata" and meta.counted is None
    else:  # WebM/Matroska have none: counted instead, the duration gives an estimate
        assert meta.count_source == "counted" and meta.estimated_count == N


@pytest.mark.parametrize("key", [f"{c}.{e}" for c, e in CODECS])
def test_iter_frames_numbers_every_frame_in_presentation_order(clips, key):
    seed = [f"{c}.{e}" for c, e in CODECS].index(key)
    with video.open_video(str(clips[key])) as container:
        got = [(df.index, df.reason, video.to_rgb(df.frame)) for df in video.iter_frames(container)]
    assert [g[0] for g in got] == list(range(N))
    assert all(reason == "" for _, reason, _ in got)
    for i in (0, 13, 27, N - 1):  # the right picture at the right number (lossy codecs: close)
        diff = np.abs(got[i][2].astype(int) - scene_frame(i, N, seed=seed).astype(int)).mean()
        assert diff < 12, (i, diff)
    assert np.abs(got[0][2].astype(int) - got[N - 1][2].astype(int)).mean() > 20  # scenes differ


def test_iter_frames_stop_after_and_resize(clips):
    with video.open_video(str(clips["libx264.mp4"])) as container:
        got = list(video.iter_frames(container, stop_after=5))
    assert [df.index for df in got] == list(range(6))
    assert video.to_rgb(got[0].frame, (32, 32)).shape == (32, 32, 3)


@pytest.mark.parametrize("rotation, turns", [(-90, 1), (90, -1), (180, 2)])
def test_rotated_videos_come_out_upright(tmp_path, rotation, turns):
    # A phone filming portrait stores landscape pixels plus a display matrix; FFmpeg's convention:
    # display rotation -90 (the "rotate=90" tag) means turn the stored picture 90 degrees clockwise.
    upright = scene_frame(3, 10, size=(48, 64))  # tall: 64 rows x 48 columns
    upright[:16, :16] = (255, 0, 0)  # a marker in the top-left corner
    stored = np.ascontiguousarray(np.rot90(upright, turns))
    path = make_video(tmp_path / "r.mp4", "libx264", n=3, size=stored.shape[1::-1], frames=[stored] * 3,
                      lossless=True, rotation=rotation)  # fmt: skip
    with video.open_video(str(path)) as container:
        frame = next(video.iter_frames(container)).frame
        out = video.to_rgb(frame)
        small = video.to_rgb(frame, (stored.shape[1] // 2, stored.shape[0] // 2))
    assert out.shape == upright.shape
    err = np.abs(out.astype(int) - upright.astype(int)).mean()  # 4:2:0 chroma costs a few levels
    upside_down = np.abs(out.astype(int) - np.rot90(upright, 2).astype(int)).mean()
    assert err < 8 and upside_down > 4 * err
    assert tuple(out[2, 2]) == pytest.approx((255, 0, 0), abs=12)
    assert small.shape == (upright.shape[0] // 2, upright.shape[1] // 2, 3)


# --------------------------------------------------------------------------- corruption score


def _frame(rgb):
    import av

    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")


def test_corruption_score_counts_grey_and_green_blocks():
    from tests.video_helpers import dead_blocks

    rgb = scene_frame(0, 1, size=(64, 48))
    assert video.corruption_score(_frame(rgb)) == 0.0
    assert video.corruption_score(dead_blocks(rgb, "grey", 0.5)) == pytest.approx(0.5)
    assert video.corruption_score(dead_blocks(rgb, "green", 0.25)) == pytest.approx(0.25)
    assert video.corruption_score(dead_blocks(rgb, "green", 1.0)) == 1.0
    # flat black and white frames (fades, title cards) are not damage
    assert video.corruption_score(_frame(np.zeros((48, 64, 3), np.uint8))) == 0.0
    assert video.corruption_score(_frame(np.full((48, 64, 3), 255, np.uint8))) == 0.0


def test_pixel_hash_is_of_pixels():
    rgb = scene_frame(0, 1)
    a, b = _frame(rgb), _frame(rgb.copy())
    assert video.pixel_hash(a) == video.pixel_hash(b)
    rgb2 = rgb.copy()
    rgb2[20, 20] += 40
    assert video.pixel_hash(_frame(rgb2)) != video.pixel_hash(a)


# --------------------------------------------------------------------------- damaged videos


def _check(path, frames=None, count=N, threshold=0.1, **kw):
    frames = list(range(count)) if frames is None else frames
    out, held = video.check_video(str(path), path.name, frames, count, threshold=threshold, **kw)
    return {i: o[1] for i, o in zip(frames, out, strict=True) if o[1]}, held


def test_frames_with_dead_blocks_are_corrupt_above_the_threshold(tmp_path):
    dead = {5: ("grey", 0.34), 9: ("green", 0.5), 14: ("grey", 0.05)}
    for codec, ext in [("libx264", "mp4"), ("mjpeg", "avi")]:
        path = make_video(tmp_path / f"d.{ext}", codec, n=N, dead=dead, lossless=True)
        bad, held = _check(path)
        assert held == N
        assert sorted(bad) == [5, 9], (codec, bad)  # 14 has 1 of 12 blocks dead: 0.08 <= 0.1
        assert "corruption score 0.50" in bad[9]
        assert sorted(_check(path, threshold=0.05)[0]) == [5, 9, 14]
        assert _check(path, check=False)[0] == {}  # no corruptness check: only hashing


def test_truncated_mp4_cannot_be_opened(clips, tmp_path):
    path = tmp_path / "t.mp4"
    shutil.copy(clips["libx264.mp4"], path)
    truncate(path, 0.5)  # the index (moov) is at the end: gone
    with pytest.raises(CorruptFileError, match="cannot open video"):
        with video.open_video(str(path)):
            pass
    bad, held = _check(path, frames=[None], count=0)
    assert held is None and "cannot open video" in bad[None]


def test_truncated_avi_frames_past_the_end_are_missing(clips, tmp_path):
    path = tmp_path / "t.avi"
    shutil.copy(clips["mjpeg.avi"], path)
    truncate(path, 0.6)
    meta = video.probe(str(path), "t.avi", use_metadata=True)
    counted = video.probe(str(path), "t.avi", use_metadata=False)
    assert meta.count == N and 0 < counted.count < N
    assert counted.mismatch() == {"video": "t.avi", "metadata": N, "counted": counted.count}
    bad, held = _check(path)  # metadata's count: the frames the file lacks are corrupt, by name
    assert held == counted.count
    assert sorted(bad) == list(range(held, N))
    assert all(r.startswith("frame missing") for r in bad.values())


@pytest.mark.parametrize("key", ["libx264.mp4", "mpeg4.mp4"])
def test_zeroed_bytes_mid_file_make_frames_corrupt(clips, tmp_path, key):
    path = tmp_path / key
    shutil.copy(clips[key], path)
    zero_range(path, 0.45, 0.08)
    assert video.probe(str(path), key, use_metadata=False).count == N  # the index still lists them
    bad, held = _check(path)
    assert held == N
    assert 1 <= len(bad) < N // 2
    assert all(("decode" in r or "damaged" in r) for r in bad.values()), bad


def test_check_files_on_a_folder_partitions_frames(tmp_path):
    root = tmp_path / "in"
    make_video(root / "a.mp4", "libx264", n=20, seed=1, static_from=15, lossless=True)
    make_video(root / "sub" / "b.avi", "mjpeg", n=12, seed=2, dead={4: ("green", 0.5)})
    (root / "broken.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not really")
    fl = list_input(str(root))
    assert len(fl) == 20 + 12 + 1
    assert (
        fl.names[0] == "a-00-mp4.png" and fl.names[20] == "broken.mkv" and fl.names[-1] == "sub/b-11-avi.png"
    )
    r1 = quality.check_files(fl, workers=1, progress=False)
    r2 = quality.check_files(fl, workers=2, progress=False)
    assert (r1.clean.names, r1.corrupt.names, r1.duplicates.names) == (
        r2.clean.names,
        r2.corrupt.names,
        r2.duplicates.names,
    )
    assert r1.corrupt.names == ["broken.mkv", "sub/b-04-avi.png"]
    assert r1.duplicates.names == [f"a-{i}-mp4.png" for i in range(16, 20)]
    assert set(r1.duplicates.column("duplicate_of")) == {"a-15-mp4.png"}
    assert r1.clean.column("video")[0] == "a.mp4" and r1.clean.column("frame")[0] == "0"
    off = quality.check_files(
        fl, enable_corruptness_check=False, remove_exact_duplicates=False, progress=False
    )
    assert off.corrupt.names == ["broken.mkv"] and len(off.clean) == 32
