"""The embedding cache never breaks a run and never serves a wrong vector.

- A damaged chunk (truncated, empty, garbage) is reported once, ignored, and its rows embedded again.
- A file replaced between check and embed does not poison the cache: embed keys each row by the hash
  of the bytes it actually decoded, not by the check's hash.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from kurate.io import embeddings_io, filelist
from kurate.phases.check import run_check
from kurate.phases.embed import run_embed
from kurate.phases.ingest import list_input
from kurate.pool import embed_cache
from tests.helpers import draw_image

MODEL = {
    "lightly": {
        "model": {"name": "resnet-9", "width": 0.125, "num_ftrs": 8, "out_dim": 8},
        "collate": {"input_size": 16},
        "loader": {"batch_size": 2, "num_workers": 0},
        "pre_trained": False,
        "seed": 3,
    }
}


def _folder(root, n=6):
    root.mkdir(parents=True)
    for k in range(n):
        draw_image(k, size=32).save(root / f"img{k}.png")
    return root


def _check(root, work):
    files, outs = work / "files", [str(work / n) for n in ("clean", "corrupt", "dups")]
    filelist.write(str(files), list_input(str(root)))
    run_check(str(files), *outs, {"workers": 1})
    return outs[0]


def _embed(clean, out, cache_root):
    run_embed(clean, str(out), {**MODEL, "embedding_cache": str(cache_root)})
    names, x, meta = embeddings_io.read_embeddings(str(out), mmap=False)
    return list(names), np.asarray(x), meta


def _chunks(cache_root):
    return sorted(p for p in cache_root.rglob("chunks/*.npz") if not p.name.startswith(".tmp"))


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "zip-without-arrays"])
def test_a_damaged_chunk_is_reported_once_ignored_and_its_rows_embedded_again(
    tmp_path, monkeypatch, caplog, damage
):
    monkeypatch.setenv(embed_cache.FLUSH_ROWS_ENV, "2")  # 6 rows → 3 chunks
    clean = _check(_folder(tmp_path / "in"), tmp_path)
    cache = tmp_path / "cache"
    names, fresh, meta = _embed(clean, tmp_path / "e1", cache)
    assert meta["computed"] == 6
    chunks = _chunks(cache)
    assert len(chunks) == 3
    victim = chunks[1]
    data = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        victim.write_bytes(b"")
    elif damage == "garbage":
        victim.write_bytes(np.random.default_rng(0).bytes(len(data)))
    else:
        import io
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("other.npy", b"\x93NUMPY")
        victim.write_bytes(buf.getvalue())
    caplog.set_level(logging.WARNING)
    names2, again, meta2 = _embed(clean, tmp_path / "e2", cache)
    assert names2 == names
    np.testing.assert_array_equal(again, fresh)
    assert meta2["computed"] == 2 and meta2["cache_hits"] == 4  # only the damaged chunk's rows
    warnings = [r for r in caplog.records if victim.name in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    caplog.clear()
    names3, third, meta3 = _embed(clean, tmp_path / "e3", cache)  # the rows are cached again now
    np.testing.assert_array_equal(third, fresh)
    assert meta3["computed"] == 0


def test_a_file_replaced_between_check_and_embed_does_not_poison_the_cache(tmp_path):
    root = _folder(tmp_path / "in", n=4)
    original = (root / "img1.png").read_bytes()
    clean = _check(root, tmp_path)  # img1's sha256 is the original's
    shutil.copyfile(root / "img3.png", root / "img1.png")  # replaced before embed
    cache = tmp_path / "cache"
    _embed(clean, tmp_path / "e1", cache)
    # Put the original back; a later run checks it (same hash as before) and takes it from the cache
    (root / "img1.png").write_bytes(original)
    (tmp_path / "w2").mkdir()
    clean2 = _check(root, tmp_path / "w2")
    names, cached, _ = _embed(clean2, tmp_path / "e2", cache)
    names_f, fresh, _ = _embed(clean2, tmp_path / "e3", tmp_path / "empty-cache")
    assert names == names_f
    i = names.index("img1.png")
    # img1's own embedding (to float rounding: other batches), not img3's as a poisoned cache would give
    np.testing.assert_allclose(cached[i], fresh[i], rtol=1e-4, atol=1e-6)
    assert np.abs(fresh[i] - fresh[names.index("img3.png")]).max() > 1e-2


def test_a_writer_killed_while_creating_key_json_leaves_no_temp_file(tmp_path):
    """key.json is linked into place from a temp file; the temp of a writer killed before the link goes."""
    import subprocess
    import sys

    from kurate.io import storage

    cache = embed_cache.EmbeddingCache(str(tmp_path), {"model": "m"})
    folder = tmp_path / embed_cache.key_id({"model": "m"})
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    pid = int(dead.stdout)
    stale = folder / f".tmp-{storage.HOST_TAG}-{pid}-abcd1234-key.json"
    stale.write_text("{")
    cache.writer()
    assert not stale.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["key.json"]
