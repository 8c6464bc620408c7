"""kurate.demo_data: the sample datasets contain exactly what their summaries claim."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from kurate import demo_data
from kurate.errors import CorruptFileError
from kurate.io.filelist import FileList
from kurate.media import image
from kurate.media.quality import check_files


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _check_summary(root: Path, s: dict[str, Any]) -> dict[str, bytes]:
    """Everything the summary claims, verified against the files on disk."""
    files = _files(root)
    assert s["root"] == str(root)
    assert len(files) == s["files"] == s["images"] + len(s["corrupt"])
    assert s["images"] == s["unique_images"] + len(s["exact_duplicates"])
    assert sorted(s["duplicate_of"]) == s["exact_duplicates"]
    clustered = [n for names in s["clusters"].values() for n in names]
    assert len(clustered) == len(set(clustered)) == s["unique_images"]
    unique = set(clustered)
    assert unique | set(s["exact_duplicates"]) | set(s["corrupt"]) == set(files)
    # Claimed copies are byte-identical to a unique image; unique images are all distinct.
    for copy, original in s["duplicate_of"].items():
        assert original in unique and files[copy] == files[original]
    assert len({hashlib.sha256(files[n]).digest() for n in unique}) == len(unique)
    # Claimed corrupt files really fail; every other file decodes.
    for name in s["corrupt"]:
        with pytest.raises(CorruptFileError):
            image.decode_image(files[name], name)
    for name in unique | set(s["exact_duplicates"]):
        image.decode_image(files[name], name)
    return files


def _agrees_with_check(root: Path, s: dict[str, Any]) -> None:
    """The check phase finds exactly the claimed copies and corrupt files."""
    res = check_files(FileList(root=str(root), names=sorted(_files(root))), workers=1, progress=False)
    assert sorted(res.corrupt.names) == s["corrupt"]
    assert (
        dict(zip(res.duplicates.names, res.duplicates.column("duplicate_of"), strict=True))
        == s["duplicate_of"]
    )
    assert len(res.clean) == s["unique_images"]


def test_tiny_dataset_counts_and_contents(tmp_path: Path) -> None:
    s = demo_data.make_tiny_dataset(tmp_path / "t", n=7, seed=3)
    files = _check_summary(tmp_path / "t", s)
    assert (s["files"], s["images"], s["unique_images"]) == (9, 8, 7)
    assert len(s["clusters"]) == 7 and s["photos"] == [] and s["seed"] == 3
    assert len(s["exact_duplicates"]) == 1 and len(s["corrupt"]) == 1
    assert files[s["corrupt"][0]] != b""
    _agrees_with_check(tmp_path / "t", s)


def test_tiny_dataset_is_deterministic_per_seed(tmp_path: Path) -> None:
    demo_data.make_tiny_dataset(tmp_path / "a", seed=5)
    demo_data.make_tiny_dataset(tmp_path / "b", seed=5)
    demo_data.make_tiny_dataset(tmp_path / "c", seed=6)
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert len(a) == 14 and a == b
    assert a.keys() == c.keys() and a != c


def test_tiny_dataset_does_not_need_scikit_image(tmp_path: Path) -> None:
    code = (
        "import sys; from kurate.demo_data import make_tiny_dataset; "
        f"make_tiny_dataset({str(tmp_path / 't')!r}, n=3); "
        "assert not any(m == 'skimage' or m.startswith('skimage.') for m in sys.modules), 'skimage imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert len(_files(tmp_path / "t")) == 5


def test_demo_dataset_small(tmp_path: Path) -> None:
    s = demo_data.make_demo_dataset(tmp_path / "d", seed=1, per_photo=3)
    files = _check_summary(tmp_path / "d", s)
    n_photos = len(s["photos"])
    assert n_photos >= 3 and set(s["photos"]) <= {label for label, _ in demo_data.PHOTOS}
    assert len(s["clusters"]) == 2 * n_photos
    assert all(len(v) == 3 for v in s["clusters"].values())
    assert s["unique_images"] == 2 * n_photos * 3
    assert len(s["exact_duplicates"]) == n_photos and len(s["corrupt"]) == 5
    assert b"" in {files[n] for n in s["corrupt"]}
    # Small, colour, in a few sub-folders.
    assert len({n.rsplit("/", 1)[0] for n in files}) >= 3
    for name in s["clusters"][f"{s['photos'][0]}/wide"]:
        img = image.decode_image(files[name], name)
        assert max(img.size) <= demo_data.MAX_EDGE
        arr = np.asarray(img).astype(int)
        assert np.abs(arr[..., 0] - arr[..., 2]).mean() > 5  # a colour photo, not greyscale
    _agrees_with_check(tmp_path / "d", s)


def test_demo_dataset_uses_all_shipped_photos_without_fetching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import skimage.data._fetchers as fetchers

    def no_fetch(*args: object, **kwargs: object) -> str:
        raise AssertionError("scikit-image fetcher called (could download)")

    monkeypatch.setattr(fetchers, "_fetch", no_fetch)
    s = demo_data.make_demo_dataset(tmp_path / "d", per_photo=1)
    assert s["photos"] == [label for label, _ in demo_data.PHOTOS]  # all present in this install


def test_demo_dataset_is_deterministic_per_seed(tmp_path: Path) -> None:
    demo_data.make_demo_dataset(tmp_path / "a", seed=2, per_photo=2)
    demo_data.make_demo_dataset(tmp_path / "b", seed=2, per_photo=2)
    demo_data.make_demo_dataset(tmp_path / "c", seed=3, per_photo=2)
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert a == b
    assert a != c


def test_demo_dataset_default_size(tmp_path: Path) -> None:
    s = demo_data.make_demo_dataset(tmp_path / "d")
    assert 250 <= s["files"] <= 350
    assert len(_files(tmp_path / "d")) == s["files"]
    assert all(len(v) == 20 for v in s["clusters"].values())
    sizes = []
    for names in s["clusters"].values():
        for name in names:
            with Image.open(tmp_path / "d" / name) as img:
                sizes.append(img.size)
    assert len(sizes) == s["unique_images"] and max(max(sz) for sz in sizes) <= 256


def test_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(FileExistsError):
        demo_data.make_tiny_dataset(tmp_path)
    with pytest.raises(FileExistsError):
        demo_data.make_demo_dataset(tmp_path, per_photo=1)
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_main_writes_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    demo_data.main([str(tmp_path / "t"), "--tiny", "--seed", "4", "-n", "5"])
    assert "wrote 7 files" in capsys.readouterr().out
    assert _files(tmp_path / "t") == _files_of_tiny(tmp_path / "ref", n=5, seed=4)
    with pytest.raises(SystemExit) as info:
        demo_data.main([str(tmp_path / "t"), "--tiny"])  # not empty any more
    assert info.value.code == 2


def _files_of_tiny(root: Path, n: int, seed: int) -> dict[str, bytes]:
    demo_data.make_tiny_dataset(root, n=n, seed=seed)
    return _files(root)
