"""Ingest: recursive listing by extension (any case), sorted relative names, relevant_filenames_file."""

from __future__ import annotations

import pytest

from kurate.errors import ConfigError, KurateError
from kurate.io import filelist
from kurate.phases.ingest import list_input, main, run_ingest


def _touch(root, names):
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_lists_by_extension_sorted_relative_recursive(tmp_path):
    _touch(
        tmp_path,
        ["b.JPG", "a/c.png", "a/b/d.TiFf", "z.webp", "x.txt", "y.json", "v.mp4", "noext", "a/e.jpeg"],
    )
    fl = list_input(str(tmp_path))
    # v.mp4 holds no video: it is listed as one sample, its file (the check phase reports it corrupt)
    assert fl.names == ["a/b/d.TiFf", "a/c.png", "a/e.jpeg", "b.JPG", "v.mp4", "z.webp"]
    assert fl.extra["ignored_other_extensions"] == 3
    assert fl.extra["video_count"] == 1 and fl.extra["videos"]["v.mp4"]["error"]
    assert fl.extra["input_count"] == 6


def test_names_with_newline_are_reported_and_skipped(tmp_path):
    _touch(tmp_path, ["ok.png", "bad\nname.png"])
    fl = list_input(str(tmp_path))
    assert fl.names == ["ok.png"]
    assert fl.extra["skipped_names"] == [repr("bad\nname.png")]


def test_grown_folder_is_seen(tmp_path):
    inp = tmp_path / "in"
    _touch(inp, ["a.png"])
    run_ingest(str(tmp_path / "l1"), {"input_dir": str(inp)})
    _touch(inp, ["b.png"])
    run_ingest(str(tmp_path / "l2"), {"input_dir": str(inp)})
    assert filelist.read(str(tmp_path / "l1")).names == ["a.png"]
    assert filelist.read(str(tmp_path / "l2")).names == ["a.png", "b.png"]


def test_relevant_filenames_restrict_the_list(tmp_path):
    inp = tmp_path / "in"
    _touch(inp, ["a.png", "sub/b.png", "c.png"])
    rel = tmp_path / "relevant.txt"
    rel.write_text("./sub/b.png\n\nc.png\nmissing.png\n")
    fl = list_input(str(inp), str(rel))
    assert fl.names == ["c.png", "sub/b.png"]
    assert fl.extra["relevant_missing"] == ["missing.png"]


@pytest.mark.parametrize("entry", ["../secret.png", "/etc/passwd", "a/../../x.png"])
def test_relevant_entries_escaping_input_are_an_error(tmp_path, entry):
    inp = tmp_path / "in"
    _touch(inp, ["a.png"])
    rel = tmp_path / "relevant.txt"
    rel.write_text(f"a.png\n{entry}\n")
    with pytest.raises(ConfigError) as err:
        list_input(str(inp), str(rel))
    assert err.value.key == "relevant_filenames_file"


def test_empty_input_is_an_error_and_main_returns_exit_code(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    with pytest.raises(KurateError):
        run_ingest(str(tmp_path / "out"), {"input_dir": str(tmp_path / "in")})
    code = main(["--files-out", str(tmp_path / "o"), "--config", f'{{"input_dir": "{tmp_path / "nope"}"}}'])
    assert code == 1
    assert "does not exist" in capsys.readouterr().err


def test_main_writes_artifact(tmp_path):
    _touch(tmp_path / "in", ["a.png", "b.gif"])
    assert (
        main(["--files-out", str(tmp_path / "o"), "--config", f'{{"input_dir": "{tmp_path / "in"}"}}']) == 0
    )
    fl = filelist.read(str(tmp_path / "o"))
    assert fl.names == ["a.png", "b.gif"] and fl.root == str(tmp_path / "in")
