"""kurate.media.quality.check_files: the clean / corrupt / duplicates partition of the check phase."""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kurate.errors import StorageError
from kurate.io.filelist import FileList
from kurate.media import image, metadata, quality
from kurate.media.quality import REASON_DISAPPEARED, CheckResult, check_files, summarize

MAX_PIXELS = 64 * 64  # every good image below is smaller; bomb.png is bigger


def _img(seed: int, fmt: str, size: tuple[int, int] = (24, 16)) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


GOOD = {
    "a.png": _img(1, "PNG"),
    "b.jpg": _img(2, "JPEG"),
    "sub/c.png": _img(3, "PNG"),
    "sub/deeper/d.jpg": _img(4, "JPEG"),
    "png_named.jpg": _img(5, "PNG"),  # content decides, not the extension
}
_TRUNC = _img(6, "JPEG", (48, 48))
CORRUPT = {
    "empty.jpg": b"",
    "truncated.jpg": _TRUNC[: len(_TRUNC) // 2],
    "noise.jpg": np.random.default_rng(7).integers(0, 256, 3000, dtype=np.uint8).tobytes(),
    "text.png": b"<html>404</html>\n",
    "bomb.png": _img(8, "PNG", (80, 80)),
    "truncated_again.jpg": _TRUNC[: len(_TRUNC) // 2],  # same bytes as another corrupt file
}
COPIES = {  # copy -> the name check must keep (first by sorted name among identical clean files)
    "b_copy.jpg": "b.jpg",
    "z/b.jpg": "b.jpg",
    "sub/c.png": "0_first.png",  # the copy sorts before the original: it becomes the keeper
}
CORRUPT_REASON_START = {
    "empty.jpg": "empty file",
    "truncated.jpg": "cannot decode image",
    "truncated_again.jpg": "cannot decode image",
    "noise.jpg": "not a readable image",
    "text.png": "not a readable image",
    "bomb.png": "decompression bomb",
    "gone.png": REASON_DISAPPEARED,
    "a_folder": "is a folder",
}


@pytest.fixture
def dataset(tmp_path: Path) -> FileList:
    contents = {**GOOD, **CORRUPT, "b_copy.jpg": GOOD["b.jpg"], "z/b.jpg": GOOD["b.jpg"]}
    contents["0_first.png"] = GOOD["sub/c.png"]
    contents["gone.png"] = _img(9, "PNG")
    for name, data in contents.items():
        p = tmp_path.joinpath(*name.split("/"))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (tmp_path / "a_folder").mkdir()  # listed as a file, but it is a folder by the time we read it
    files = FileList(root=str(tmp_path), names=sorted([*contents, "a_folder"]))
    (tmp_path / "gone.png").unlink()  # deleted between listing and checking
    return files


def _partition_names(res: CheckResult) -> list[str]:
    return res.clean.names + res.corrupt.names + res.duplicates.names


def _sha(root: str, name: str) -> str:
    return hashlib.sha256(Path(root, name).read_bytes()).hexdigest()


def test_partition_reasons_hashes_and_duplicates(dataset: FileList) -> None:
    res = check_files(dataset, max_pixels=MAX_PIXELS, workers=1)
    # Every input name is in exactly one list; all lists keep the root.
    assert sorted(_partition_names(res)) == sorted(dataset.names)
    assert len(set(_partition_names(res))) == len(dataset.names)
    assert res.clean.root == res.corrupt.root == res.duplicates.root == dataset.root

    assert dict(zip(res.duplicates.names, res.duplicates.column("duplicate_of"), strict=True)) == {
        "b_copy.jpg": "b.jpg",
        "z/b.jpg": "b.jpg",
        "sub/c.png": "0_first.png",
    }
    assert sorted(res.clean.names) == sorted(
        ["0_first.png", "a.png", "b.jpg", "sub/deeper/d.jpg", "png_named.jpg"]
    )
    reasons = dict(zip(res.corrupt.names, res.corrupt.column("reason"), strict=True))
    assert set(reasons) == set(CORRUPT_REASON_START)
    for name, start in CORRUPT_REASON_START.items():
        assert reasons[name].startswith(start), (name, reasons[name])
    assert reasons["gone.png"] == REASON_DISAPPEARED
    # Keepers of duplicates are clean; sha256 is the content hash.
    assert set(res.duplicates.column("duplicate_of")) <= set(res.clean.names)
    for name, digest in zip(res.clean.names, res.clean.column("sha256"), strict=True):
        assert digest == _sha(dataset.root, name)
    assert list(res.clean.columns) == ["sha256", *metadata.KEYS]
    assert list(res.corrupt.columns) == ["reason"]
    assert list(res.duplicates.columns) == ["duplicate_of"]


def test_outputs_keep_input_order(dataset: FileList) -> None:
    res = check_files(dataset, max_pixels=MAX_PIXELS, workers=1)
    for part in (res.clean, res.corrupt, res.duplicates):
        assert part.names == [n for n in dataset.names if n in set(part.names)]


def test_keeper_is_first_by_sorted_name_even_if_input_is_not_sorted(dataset: FileList) -> None:
    backwards = FileList(root=dataset.root, names=list(reversed(dataset.names)))
    res = check_files(backwards, max_pixels=MAX_PIXELS, workers=1)
    dup = dict(zip(res.duplicates.names, res.duplicates.column("duplicate_of"), strict=True))
    assert dup == {"b_copy.jpg": "b.jpg", "z/b.jpg": "b.jpg", "sub/c.png": "0_first.png"}
    assert res.duplicates.names == ["z/b.jpg", "sub/c.png", "b_copy.jpg"]  # input (reversed) order
    assert res.clean.names == sorted(res.clean.names, reverse=True)


def test_identical_corrupt_files_are_not_duplicates(dataset: FileList) -> None:
    res = check_files(dataset, max_pixels=MAX_PIXELS, workers=1)
    assert {"truncated.jpg", "truncated_again.jpg"} <= set(res.corrupt.names)
    assert not {"truncated.jpg", "truncated_again.jpg"} & set(res.duplicates.names)


def test_corrupt_file_is_never_a_keeper(tmp_path: Path) -> None:
    # "a.jpg" sorts first but is corrupt; its clean twin cannot exist (same bytes, same verdict), so
    # the clean "b.jpg"/"c.jpg" pair is deduplicated among themselves only.
    good = _img(1, "JPEG")
    (tmp_path / "a.jpg").write_bytes(good[:50])
    (tmp_path / "b.jpg").write_bytes(good)
    (tmp_path / "c.jpg").write_bytes(good)
    res = check_files(FileList(root=str(tmp_path), names=["a.jpg", "b.jpg", "c.jpg"]), workers=1)
    assert res.corrupt.names == ["a.jpg"]
    assert res.clean.names == ["b.jpg"]
    assert res.duplicates.names == ["c.jpg"] and res.duplicates.column("duplicate_of") == ["b.jpg"]


def test_two_workers_give_identical_results(dataset: FileList) -> None:
    one = check_files(dataset, max_pixels=MAX_PIXELS, workers=1)
    two = check_files(dataset, max_pixels=MAX_PIXELS, workers=2, chunk_size=2)
    assert two == one
    all_cores = check_files(dataset, max_pixels=MAX_PIXELS, workers=-1, chunk_size=3)
    assert all_cores == one


def test_check_disabled_only_missing_files_are_corrupt(dataset: FileList) -> None:
    res = check_files(dataset, enable_corruptness_check=False, max_pixels=MAX_PIXELS, workers=1)
    assert dict(zip(res.corrupt.names, res.corrupt.column("reason"), strict=True)) == {
        "gone.png": REASON_DISAPPEARED,
        "a_folder": "is a folder, not a file",
    }
    clean = set(res.clean.names)
    # Undecodable files pass as clean; identical corrupt bytes are then plain duplicates.
    assert {"empty.jpg", "truncated.jpg", "noise.jpg", "text.png", "bomb.png"} <= clean
    dup = dict(zip(res.duplicates.names, res.duplicates.column("duplicate_of"), strict=True))
    assert dup["truncated_again.jpg"] == "truncated.jpg"
    assert dup["b_copy.jpg"] == "b.jpg"
    for name, digest in zip(res.clean.names, res.clean.column("sha256"), strict=True):
        assert digest == _sha(dataset.root, name)
    assert sorted(_partition_names(res)) == sorted(dataset.names)
    assert list(res.clean.columns) == ["sha256"]  # nothing decoded: no computed metadata


def test_dedup_disabled_duplicates_stay_clean(dataset: FileList) -> None:
    res = check_files(dataset, remove_exact_duplicates=False, max_pixels=MAX_PIXELS, workers=1)
    assert len(res.duplicates) == 0
    assert set(COPIES) | set(COPIES.values()) <= set(res.clean.names)
    assert len(res.corrupt) == len(CORRUPT_REASON_START)
    sha = dict(zip(res.clean.names, res.clean.column("sha256"), strict=True))
    assert sha["b_copy.jpg"] == sha["b.jpg"] == sha["z/b.jpg"]


def test_default_pixel_limit_accepts_the_bomb_sized_image(dataset: FileList) -> None:
    res = check_files(dataset, workers=1)
    assert "bomb.png" in res.clean.names


def test_summarize(dataset: FileList) -> None:
    s = summarize(check_files(dataset, max_pixels=MAX_PIXELS, workers=1))
    assert s["total"] == len(dataset.names)
    assert (s["clean"], s["corrupt"], s["duplicates"]) == (5, 8, 3)
    assert s["corrupt_by_reason"]["cannot decode image"] == 2
    assert s["corrupt_by_reason"][REASON_DISAPPEARED] == 1
    assert sum(s["corrupt_by_reason"].values()) == 8


def test_empty_list(tmp_path: Path) -> None:
    res = check_files(FileList(root=str(tmp_path), names=[]), workers=2)
    assert (len(res.clean), len(res.corrupt), len(res.duplicates)) == (0, 0, 0)
    assert summarize(res)["total"] == 0


def test_repeated_name_is_checked_once(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(_img(1, "PNG"))
    res = check_files(FileList(root=str(tmp_path), names=["a.png", "a.png"]), workers=1)
    assert res.clean.names == ["a.png"] and len(res.duplicates) == 0


def test_extra_metadata_travels(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(_img(1, "PNG"))
    res = check_files(FileList(root=str(tmp_path), names=["a.png"], extra={"run": "x"}), workers=1)
    assert res.clean.extra == {"run": "x"} and res.corrupt.extra == {"run": "x"}


@pytest.mark.parametrize("workers", [1, 2])
def test_systemic_storage_errors_are_fatal(workers: int, s3) -> None:
    files = FileList(root="s3://no-such-bucket-kurate/data", names=["a.jpg", "b.jpg", "c.jpg"])
    with pytest.raises(StorageError, match="no such bucket"):
        check_files(files, workers=workers, chunk_size=1)


def test_logs_a_summary(dataset: FileList, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="kurate.check"):
        check_files(dataset, max_pixels=MAX_PIXELS, workers=1, progress=False)
    msgs = [r.getMessage() for r in caplog.records if r.name == "kurate.check"]
    assert any("5 clean, 8 corrupt, 3 exact duplicates" in m for m in msgs)


def test_reads_every_file_once(dataset: FileList, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = quality.storage.read_bytes

    def counting(uri: str) -> bytes:
        calls.append(uri)
        return real(uri)

    monkeypatch.setattr(quality.storage, "read_bytes", counting)
    check_files(dataset, max_pixels=MAX_PIXELS, workers=1)
    assert len(calls) == len(set(calls)) == len(dataset.names)


def test_workers_use_a_process_pool_and_one_worker_does_not(
    dataset: FileList, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[int] = []

    class RecordingPool(quality.ProcessPoolExecutor):
        def __init__(self, max_workers: int) -> None:
            made.append(max_workers)
            super().__init__(max_workers=max_workers)

    monkeypatch.setattr(quality, "ProcessPoolExecutor", RecordingPool)
    check_files(dataset, max_pixels=MAX_PIXELS, workers=1)
    assert made == []
    check_files(dataset, max_pixels=MAX_PIXELS, workers=2)
    assert made == [2]
    # Never more processes than chunks of work.
    check_files(FileList(root=dataset.root, names=["a.png"]), workers=8)
    assert made == [2]


def test_clean_list_carries_the_computed_metadata_of_the_decoded_pixels(dataset: FileList) -> None:
    res = check_files(dataset, max_pixels=MAX_PIXELS, workers=1)
    for row, name in enumerate(res.clean.names):
        data = (Path(dataset.root) / name).read_bytes()
        want = metadata.image_metadata(image.decode_image(data, name, MAX_PIXELS), len(data))
        for key in metadata.KEYS:
            assert float(res.clean.column(key)[row]) == pytest.approx(want[key], rel=1e-5), (name, key)
        assert float(res.clean.column("lightly.sizeInBytes")[row]) == len(data)


def test_computed_metadata_of_a_large_jpeg_is_measured_on_the_checks_reduced_pixels(tmp_path: Path) -> None:
    """The check decodes a large JPEG DCT-scaled: its metadata is measured on those pixels (no second,
    full decode), while width and height are the file's full upright size, as decode_image gives it."""
    from tests import jpeg_corpus as jc

    photo = jc.photo_image(jc.photos()[0][1], (800, 600), np.random.default_rng(5))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: upright it is 600 wide, 800 high
    files = {"plain.jpg": jc.encode_jpeg(photo), "turned.jpg": jc.encode_jpeg(photo, exif=exif.tobytes())}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    res = check_files(FileList(root=str(tmp_path), names=sorted(files)), workers=1)
    assert sorted(res.clean.names) == sorted(files)
    for row, name in enumerate(res.clean.names):
        data = files[name]
        checked = image.check_image(data, name)
        full = image.decode_image(data, name)
        assert checked.size != full.size  # DCT-scaled: the premise of this test
        got = {k: float(res.clean.column(k)[row]) for k in metadata.KEYS}
        assert (got["lightly.width"], got["lightly.height"]) == full.size
        assert full.size == ((600, 800) if name == "turned.jpg" else (800, 600))
        assert got["lightly.sizeInBytes"] == len(data)
        want = metadata.image_metadata(checked, len(data))
        for key in ("lightly.sharpness", "lightly.snr", "lightly.luminance", "lightly.contrast"):
            assert got[key] == pytest.approx(want[key], rel=1e-5), (name, key)
        assert got["lightly.sharpness"] != pytest.approx(
            metadata.image_metadata(full, len(data))["lightly.sharpness"], rel=1e-3
        )  # not the full decode's pixels
