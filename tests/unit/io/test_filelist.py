from __future__ import annotations

import pytest

from kurate.errors import KurateError
from kurate.io import filelist


def test_round_trip_with_awkward_names(tmp_path):
    names = ["a,b.png", 'quote"d.jpg', "sp ace/ü.png", "plain.png"]
    fl = filelist.FileList(
        root="/data", names=names, columns={"sha256": ["1", "2", "3", "4"]}, extra={"k": 1}
    )
    filelist.write(str(tmp_path / "l"), fl)
    back = filelist.read(str(tmp_path / "l"))
    assert back.names == names and back.column("sha256") == ["1", "2", "3", "4"]
    assert back.root == "/data" and back.extra == {"k": 1}
    assert filelist.read_meta(str(tmp_path / "l"))["count"] == 4


def test_truncated_list_is_detected(tmp_path):
    filelist.write(str(tmp_path / "l"), filelist.FileList(root="/r", names=["a", "b", "c"]))
    p = tmp_path / "l" / "files.csv"
    p.write_text("\n".join(p.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(KurateError, match="incomplete"):
        filelist.read(str(tmp_path / "l"))


def test_misaligned_column_rejected(tmp_path):
    with pytest.raises(ValueError):
        filelist.write(str(tmp_path / "l"), filelist.FileList(root="/r", names=["a"], columns={"x": []}))


def test_carriage_return_in_a_name_survives(tmp_path):
    fl = filelist.FileList(root="/r", names=["a\rb.png", "c.png"])
    filelist.write(str(tmp_path / "l"), fl)
    assert filelist.read(str(tmp_path / "l")).names == ["a\rb.png", "c.png"]
