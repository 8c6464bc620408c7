"""The datapool library: preselected selection, versioned commits, concurrency, the embedding cache."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from kurate.errors import DatapoolConflictError, DatapoolError
from kurate.io import filelist, storage
from kurate.pool import datapool, embed_cache
from kurate.selection import coreset as selection

DESC = {"dim": 4, "model": {"name": "resnet-18"}, "input_size": 32, "weights_id": "random:1"}


def _rng_points(n: int, d: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


# --------------------------------------------------------------------------- selection


@pytest.mark.parametrize("blocks", [(4096, 4096), (7, 5)])
def test_preselected_embeddings_equal_preselected_rows(monkeypatch, blocks):
    """A datapool given as its own matrix selects exactly as if its rows were preselected indices."""
    monkeypatch.setattr(selection, "_EXT_ROWS", blocks[0])
    monkeypatch.setattr(selection, "_EXT_COLS", blocks[1])
    pool, new = _rng_points(23, seed=1), _rng_points(40, seed=2)
    got = selection.coreset_with_info(new, n_samples=6, preselected_embeddings=pool)
    both = np.concatenate([pool, new])
    ref = selection.coreset_with_info(both, n_samples=6, preselected=np.arange(len(pool)))
    assert got.indices.tolist() == (ref.indices - len(pool)).tolist()
    np.testing.assert_allclose(got.pick_distances, ref.pick_distances, rtol=1e-4)
    # and the first pick is the new point farthest from the pool
    d = np.sqrt(((new[:, None, :] - pool[None]) ** 2).sum(-1)).min(1)
    assert got.indices[0] == int(np.argmax(d))


def test_preselected_embeddings_with_min_distance_and_random():
    pool = _rng_points(10, seed=3)
    new = np.concatenate([pool[:3] + 1e-3, _rng_points(5, seed=4) * 10])  # 3 near-copies of pool rows
    res = selection.coreset_with_info(new, min_distance=0.5, preselected_embeddings=pool)
    assert set(res.indices.tolist()).isdisjoint({0, 1, 2})
    rnd = selection.random_selection(
        len(new), None, seed=1, embeddings=new, min_distance=0.5, preselected_embeddings=pool
    )
    assert set(rnd.indices.tolist()).isdisjoint({0, 1, 2}) and len(rnd.indices) > 0
    with pytest.raises(ValueError, match="shape"):
        selection.coreset_with_info(new, n_samples=1, preselected_embeddings=_rng_points(3, d=5))


# --------------------------------------------------------------------------- commits


def _commit(loc, base, names, seed=0, **kw):
    x = _rng_points(len(names), seed=seed)
    hashes = [f"h-{n}" for n in names]
    return datapool.commit(loc, base, names, x, hashes, DESC, run_id=kw.pop("run_id", "r"), **kw)


def test_commits_make_versions_with_history_and_processed_record(tmp_path):
    loc = str(tmp_path / "pool")
    assert datapool.latest_version(loc) == 0 and datapool.read_head(loc) is None
    first = _commit(loc, 0, ["a.png", "b.png"], processed=[("c.png", "h-c.png")], run_id="run1")
    second = _commit(loc, 1, ["d.png", "a.png"], seed=1, run_id="run2")  # a.png changed: replaced
    assert (first.version, second.version) == (1, 2)
    assert (second.added, second.replaced, second.entries) == (1, 1, 3)
    head = datapool.read_head(loc)
    assert head is not None and head.version == 2 and head.state == second.state
    names, x, hashes, meta = datapool.read_state(head.state)
    assert names == ["b.png", "d.png", "a.png"] and x.shape == (3, 4)
    assert hashes == ["h-b.png", "h-d.png", "h-a.png"] and meta["run_id"] == "run2"
    assert datapool.seen_index(head.state) == {n: f"h-{n}" for n in ["a.png", "b.png", "c.png", "d.png"]}
    # history: both states kept, the first untouched
    states = sorted(p.name for p in (tmp_path / "pool" / "history").iterdir())
    assert len(states) == 2 and "run1" in states[0] and "run2" in states[1]
    assert datapool.read_state(first.state)[0] == ["a.png", "b.png"]
    # Lightly's layout of the current state
    latest = (tmp_path / "pool" / "datapool_latest.csv").read_text().splitlines()
    assert latest[0].startswith("filenames,embedding_0") and [r.split(",")[0] for r in latest[1:]] == names
    assert json.loads((tmp_path / "pool" / "model" / "model.json").read_text())["weights_id"] == "random:1"


def test_keep_history_false_removes_the_previous_state(tmp_path):
    loc = str(tmp_path / "pool")
    first = _commit(loc, 0, ["a.png"])
    second = _commit(loc, 1, ["b.png"], keep_history=False)
    assert storage.exists(first.state)  # until the run is complete (its rerun may still need it)
    datapool.drop_superseded(loc, second.version)  # export calls it after report.json
    assert not storage.exists(first.state)
    assert len(list((tmp_path / "pool" / "history").iterdir())) == 1


def test_model_or_dimension_mismatch_is_a_clear_error(tmp_path):
    loc = str(tmp_path / "pool")
    _commit(loc, 0, ["a.png"])
    other = {**DESC, "weights_id": "sha256:abc"}
    with pytest.raises(DatapoolError, match="another model.*weights_id"):
        datapool.commit(loc, 1, ["b.png"], _rng_points(1), ["h"], other, run_id="r")
    with pytest.raises(DatapoolError, match="dimension 4 .* dimension 8"):
        datapool.check_compatible(loc, DESC, {**DESC, "dim": 8})
    assert datapool.latest_version(loc) == 1  # nothing committed


def test_the_model_is_kept_with_the_datapool(tmp_path):
    """model/ is written by the first commit; a trained model is also checkpoint_latest.ckpt (each commit)."""
    loc = str(tmp_path / "pool")
    ckpt = tmp_path / "run1" / "checkpoint_latest.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"trained-1")
    datapool.commit(loc, 0, ["a"], np.ones((1, 2)), ["h"], {"dim": 2}, run_id="r1", checkpoint=str(ckpt))
    assert (tmp_path / "pool" / "model" / "checkpoint.ckpt").read_bytes() == b"trained-1"
    assert not (tmp_path / "pool" / datapool.LATEST_CHECKPOINT).exists()  # not trained: only model/
    ckpt.write_bytes(b"trained-2")
    datapool.commit(
        loc, 1, ["b"], np.ones((1, 2)), ["g"], {"dim": 2}, run_id="r2", checkpoint=str(ckpt), trained=True
    )
    assert (tmp_path / "pool" / datapool.LATEST_CHECKPOINT).read_bytes() == b"trained-2"
    assert (tmp_path / "pool" / "model" / "checkpoint.ckpt").read_bytes() == b"trained-1"  # first commit's
    assert (
        json.loads((tmp_path / "pool" / "model" / "model.json").read_text())["checkpoint"]
        == "checkpoint.ckpt"
    )


def test_weak_labels_are_kept_with_the_entries(tmp_path):
    """append_weak_labels: each state stores its entries' predictions; kept entries keep theirs, a replaced
    entry loses them unless the new run brings some, and weak_labels_latest.json follows the current state."""
    loc = str(tmp_path / "pool")
    pool = tmp_path / "pool"

    def weak(source, names, cid=1):
        return {
            "format": "kurate.weak_labels/1",
            "task_type": "object-detection",
            "source": source,
            "categories": [{"id": cid, "name": f"class{cid}"}],
            "samples": [
                {"file_name": n, "predictions": [{"category_id": cid, "bbox": [0, 0, 1, 1]}], "score": 1.0}
                for n in names
            ],
        }

    x = np.ones((2, 2))
    datapool.commit(
        loc, 0, ["a", "b"], x, ["ha", "hb"], {"dim": 2}, run_id="r1", weak_labels=weak("det1", ["a", "b"])
    )
    first = json.loads((pool / datapool.LATEST_WEAK_LABELS).read_text())
    assert [(r["file_name"], r["source"]) for r in first["samples"]] == [("a", "det1"), ("b", "det1")]
    # run 2 replaces b (changed content) and adds c, with labels from another detector for c only
    datapool.commit(
        loc, 1, ["b", "c"], x, ["hb2", "hc"], {"dim": 2}, run_id="r2", weak_labels=weak("det2", ["c"], cid=2)
    )
    second = json.loads((pool / datapool.LATEST_WEAK_LABELS).read_text())
    assert [(r["file_name"], r["source"]) for r in second["samples"]] == [("a", "det1"), ("c", "det2")]
    assert [c["id"] for c in second["categories"]] == [1, 2]
    head = datapool.read_head(loc)
    assert head is not None and datapool.read_weak_labels(head.state) == second
    # run 3 (no append_weak_labels) replaces a and c: no entry has labels any more
    datapool.commit(loc, 2, ["a", "c"], x, ["ha2", "hc2"], {"dim": 2}, run_id="r3")
    assert not (pool / datapool.LATEST_WEAK_LABELS).exists()
    assert datapool.read_weak_labels(datapool.read_head(loc).state) is None


def test_split_seen_needs_same_name_and_same_content():
    clean = filelist.FileList(root="/r", names=["a", "b", "c", "d"], columns={"sha256": ["1", "2", "x", ""]})
    new, seen = datapool.split_seen(clean, {"a": "1", "b": "2", "c": "3", "d": ""})
    assert seen == [0, 1] and new == [2, 3]  # c changed; d has no hash: new


def _race(loc: str, contenders: int) -> list[object]:
    barrier = threading.Barrier(contenders)

    def one(i: int) -> object:
        barrier.wait()
        try:
            return _commit(loc, 1, [f"new_{i}.png"], seed=i, run_id=f"c{i}")
        except DatapoolConflictError as exc:
            return exc

    with ThreadPoolExecutor(contenders) as pool:
        return list(pool.map(one, range(contenders)))


def _assert_valid(loc: str, expect_entries: int) -> None:
    head = datapool.read_head(loc)
    assert head is not None
    names, x, hashes, meta = datapool.read_state(head.state)
    assert len(names) == x.shape[0] == len(hashes) == expect_entries == head.pointer["entries"]
    latest = storage.read_text(storage.join(loc, datapool.LATEST_CSV)).splitlines()
    assert [r.split(",")[0] for r in latest[1:]] == names


@pytest.mark.parametrize("where", ["local", "s3"])
def test_concurrent_commits_one_wins_the_other_fails_cleanly(where, request, tmp_path):
    """Real threads race to commit on the same base version: exactly one wins, nothing half-written."""
    if where == "s3":
        s3 = request.getfixturevalue("s3")
        loc = f"s3://{s3.bucket()}/datapool/pool"
    else:
        loc = str(tmp_path / "pool")
    _commit(loc, 0, ["old.png"])
    results = _race(loc, 4)
    winners = [r for r in results if isinstance(r, datapool.CommitResult)]
    losers = [r for r in results if isinstance(r, DatapoolConflictError)]
    assert len(winners) == 1 and len(losers) == 3
    assert "updated by another run" in str(losers[0]) and "nothing of this run" in str(losers[0])
    assert datapool.latest_version(loc) == 2
    _assert_valid(loc, 2)
    # the losers left no state behind: only the two committed states exist
    states = {n.split("/", 1)[0] for n in storage.list_files(storage.join(loc, datapool.HISTORY))}
    assert len(states) == 2
    # a rerun on the new state succeeds and keeps the winner's entry
    rerun = _commit(loc, 2, ["late.png"], run_id="rerun")
    assert rerun.version == 3
    _assert_valid(loc, 3)


def test_losing_the_exclusive_create_removes_the_written_state(tmp_path, monkeypatch):
    """The pointer is created by someone else between the version check and the create."""
    loc = str(tmp_path / "pool")
    real = storage.create_exclusive

    def sneak(uri: str, data: bytes) -> bool:
        if uri.endswith("00000001.json"):
            real(uri, json.dumps({"format": datapool.FORMAT, "state": "history/other"}).encode())
        return real(uri, data)

    monkeypatch.setattr(storage, "create_exclusive", sneak)
    with pytest.raises(DatapoolConflictError):
        _commit(loc, 0, ["a.png"])
    assert not (tmp_path / "pool" / "history").exists() or not list((tmp_path / "pool" / "history").iterdir())


# --------------------------------------------------------------------------- embedding cache


def test_embedding_cache_round_trip_and_damaged_chunks(tmp_path, monkeypatch):
    monkeypatch.setenv(embed_cache.FLUSH_ROWS_ENV, "2")
    key = embed_cache.cache_key({"name": "resnet-18", "num_ftrs": 4}, "random:1", 32)
    cache = embed_cache.EmbeddingCache(str(tmp_path / "cache"), key)
    w = cache.writer()
    x = _rng_points(5)
    w.add(["h0", "h1", ""], x[:3])  # the row without a hash is not cached; 2 rows → one chunk
    assert w.written == 2
    w.add(["h3", "h4"], x[3:])
    w.flush()
    chunks = list((tmp_path / "cache" / embed_cache.key_id(key) / "chunks").iterdir())
    assert len(chunks) == 2 and not any(c.name.startswith(".tmp") for c in chunks)
    (chunks[0].parent / "junk.npz").write_bytes(b"not a zip")
    got = cache.load(["h0", "h4", "missing"])
    assert set(got) == {"h0", "h4"}
    np.testing.assert_array_equal(got["h4"], x[4])
    other = embed_cache.EmbeddingCache(str(tmp_path / "cache"), {**key, "input_size": 64})
    assert other.load(["h0"]) == {}  # another preprocessing: another key
