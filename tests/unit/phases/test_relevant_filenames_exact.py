"""``relevant_filenames_file`` matches names exactly: one name per line as kurate lists it.

Only the line ending (LF or CRLF) and a leading ``./`` are not part of a name, so names with spaces
or backslashes can be chosen.
"""

from __future__ import annotations

from kurate.phases.ingest import list_input, read_relevant_filenames


def _touch(root, names):
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_leading_and_trailing_spaces_and_backslashes_are_part_of_the_name(tmp_path):
    inp = tmp_path / "in"
    names = [" lead.png", "trail .png", "back\\slash.png", "sub/tab\there.png", "plain.png", "lead.png"]
    _touch(inp, names)
    rel = tmp_path / "relevant.txt"
    rel.write_bytes(b" lead.png\r\ntrail .png\nback\\slash.png\nsub/tab\there.png\n\n")
    fl = list_input(str(inp), str(rel))
    assert fl.names == sorted([" lead.png", "trail .png", "back\\slash.png", "sub/tab\there.png"])
    assert fl.extra["relevant_missing_count"] == 0


def test_a_backslash_is_not_a_folder_separator(tmp_path):
    inp = tmp_path / "in"
    _touch(inp, ["sub/b.png"])
    rel = tmp_path / "relevant.txt"
    rel.write_text("sub\\b.png\n")
    fl = list_input(str(inp), str(rel))
    assert fl.names == []  # nothing chosen: no file is named 'sub\b.png'
    assert fl.extra["relevant_missing"] == ["sub\\b.png"]


def test_the_format_read_back(tmp_path):
    rel = tmp_path / "r.txt"
    rel.write_bytes(b"./a.png\r\n b.png \n\nc\\d.png")
    assert read_relevant_filenames(str(rel)) == {"a.png", " b.png ", "c\\d.png"}
