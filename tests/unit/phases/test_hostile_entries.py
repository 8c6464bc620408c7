"""One odd entry never fails the run: each is reported with its reason (name escaped) and skipped.

The corpus (tests/hostile.py) is generated here: non-UTF-8 names, symlink loops, a dangling link, a
FIFO, a socket, devices, and valid images whose names differ only by normalisation or case or carry
every punctuation mark. Listing must never open a special file (a FIFO blocks forever).
"""

from __future__ import annotations

import os
import threading

import pytest

from kurate.io import storage
from kurate.phases import ingest
from tests.hostile import make_hostile_corpus


@pytest.fixture
def corpus(tmp_path):
    c = make_hostile_corpus(tmp_path / "in")
    yield c
    c.close()


def _in_thread(fn, timeout: float = 30.0):
    """Run ``fn`` and fail (instead of hanging the suite) if it blocks, e.g. on a FIFO."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: B036 - handed to the test
            out["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{fn} blocked (opened a FIFO or a device?)"
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.mark.timeout(120)
def test_listing_skips_and_reports_every_hostile_entry(corpus):
    fl = _in_thread(lambda: ingest.list_input(str(corpus.root)))
    assert fl.names == corpus.good
    reported = {name: reason for name, reason in fl.extra["skipped_entries"]}
    assert set(reported) == set(corpus.skipped), reported
    for name, word in corpus.skipped.items():
        assert word.lower() in reported[name].lower(), (name, reported[name])
    for name in reported:  # shown escaped: printable, encodable, one line
        name.encode("utf-8")
        assert name.isprintable()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("entry", ["fifo.jpg", "zero.jpg", "null.png", "sock.png"])
def test_reading_a_special_file_fails_at_once_and_never_blocks(corpus, entry):
    with pytest.raises(OSError) as err:
        _in_thread(lambda: storage.read_bytes(str(corpus.root / entry)), timeout=20)
    assert "regular file" in str(err.value)


@pytest.mark.timeout(120)
def test_a_fifo_named_in_relevant_filenames_is_reported_not_opened(corpus, tmp_path):
    rel = tmp_path / "relevant.txt"
    rel.write_text("fifo.jpg\ncase/Photo.png\n")
    fl = _in_thread(lambda: ingest.list_input(str(corpus.root), str(rel)))
    assert fl.names == ["case/Photo.png"]


@pytest.mark.timeout(120)
def test_a_fifo_as_relevant_filenames_file_is_a_config_error(corpus):
    from kurate.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        _in_thread(lambda: ingest.list_input(str(corpus.root), str(corpus.root / "fifo.jpg")))
    assert err.value.key == "relevant_filenames_file"


@pytest.mark.timeout(300)
def test_check_reads_each_listed_hostile_name_exactly_once(corpus, tmp_path):
    """Every valid image with an awkward name survives the check's lists (CSV quoting, encodings)."""
    from kurate.io import filelist
    from kurate.phases.check import run_check

    fl = _in_thread(lambda: ingest.list_input(str(corpus.root)))
    files = tmp_path / "files"
    filelist.write(str(files), fl)
    outs = [str(tmp_path / n) for n in ("clean", "corrupt", "dups")]
    run_check(str(files), *outs, {"workers": 1})
    clean = filelist.read(outs[0])
    assert sorted(clean.names) == corpus.good
    assert len(set(clean.column("sha256"))) == len(corpus.good)  # all distinct images
    assert not filelist.read(outs[1]).names


def test_a_file_replaced_by_a_fifo_after_listing_is_corrupt_not_a_hang(tmp_path):
    """Between listing and checking a file becomes a FIFO: the check lists it as corrupt at once."""
    from kurate.io import filelist
    from kurate.phases.check import run_check
    from tests.helpers import draw_image

    root = tmp_path / "in"
    root.mkdir()
    for k in range(3):
        draw_image(k).save(root / f"img{k}.png")
    fl = ingest.list_input(str(root))
    os.unlink(root / "img1.png")
    os.mkfifo(root / "img1.png")
    files = tmp_path / "files"
    filelist.write(str(files), fl)
    outs = [str(tmp_path / n) for n in ("clean", "corrupt", "dups")]
    _in_thread(lambda: run_check(str(files), *outs, {"workers": 1}), timeout=60)
    corrupt = filelist.read(outs[1])
    assert corrupt.names == ["img1.png"]
    assert "regular file" in corrupt.column("reason")[0]
