"""Sharded embedding in the library: shards tile the list, the merge restores the unsharded artifact
and refuses anything that does not tile it exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kurate.errors import ConfigError, KurateError
from kurate.io import embeddings_io, filelist, sharding, timing
from kurate.phases.embed import run_embed
from kurate.phases.merge import main as merge_main
from kurate.phases.merge import run_merge


@pytest.mark.parametrize("total", [0, 1, 5, 7, 100])
@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_bounds_tile_the_list(total, count):
    bounds = [sharding.shard_bounds(total, i, count) for i in range(count)]
    assert bounds[0][0] == 0 and bounds[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, sharding.MAX_SHARDS + 1])
def test_bad_shard_count_names_the_setting(bad):
    with pytest.raises(ConfigError) as exc:
        sharding.shard_indices(bad)
    assert exc.value.key == "embed_shards"


def test_shard_index_out_of_range():
    with pytest.raises(ConfigError, match="shard_index"):
        sharding.shard_bounds(10, 3, 3)


def _clean_list(tmp_path, n=11):
    names = [f"d/img_{i:02d}.png" for i in range(n)]
    fl = filelist.FileList(root="/data", names=names, columns={"sha256": [f"h{i}" for i in range(n)]})
    path = str(tmp_path / "clean")
    filelist.write(path, fl)
    return path, names


def _precomputed(tmp_path, names, d=5):
    x = np.random.default_rng(0).standard_normal((len(names), d)).astype(np.float32)
    csv = str(tmp_path / "pre.csv")
    embeddings_io.write_lightly_csv(csv, names, x)
    return csv, x


@pytest.mark.parametrize("count", [1, 2, 4, 11, 13])
def test_sharded_embed_then_merge_equals_unsharded(tmp_path, count):
    clean, names = _clean_list(tmp_path)
    csv, x = _precomputed(tmp_path, names)
    cfg = {"embeddings": csv}
    run_embed(clean, str(tmp_path / "whole"), cfg)
    shard_paths = []
    for i in reversed(range(count)):  # any order
        p = str(tmp_path / "shards" / f"s{i}")
        run_embed(clean, p, cfg, shard_index=i, shard_count=count)
        shard_paths.append(p)
    meta = sharding.merge_embeddings(shard_paths, str(tmp_path / "merged"))
    n1, x1, m1 = embeddings_io.read_embeddings(str(tmp_path / "whole"))
    n2, x2, m2 = embeddings_io.read_embeddings(str(tmp_path / "merged"))
    assert n2 == n1 == names
    np.testing.assert_array_equal(x2, x1)
    assert m2["root"] == m1["root"] == "/data" and m2["source"] == m1["source"] and m2["dim"] == 5
    assert meta["shards"] == count and "shard" not in m2
    # the report's embed time spans the shards: first start to last end
    parts = [timing.read(p) for p in shard_paths]
    span = timing.read(str(tmp_path / "merged"))
    assert span is not None and span["phase"] == "embed" and span["shards"] == count
    assert span["started_at"] == min(p["started_at"] for p in parts)
    assert span["finished_at"] == max(p["finished_at"] for p in parts)


def test_merge_cli_reads_a_folder_of_shards(tmp_path):
    """Argo hands the merge step one folder holding every shard (one repository key)."""
    clean, names = _clean_list(tmp_path)
    csv, x = _precomputed(tmp_path, names)
    for i in range(3):
        run_embed(clean, str(tmp_path / "key" / str(i)), {"embeddings": csv}, shard_index=i, shard_count=3)
    rc = merge_main(["--shards-in", str(tmp_path / "key"), "--embeddings-out", str(tmp_path / "out")])
    assert rc == 0
    got_names, got, _ = embeddings_io.read_embeddings(str(tmp_path / "out"))
    assert got_names == names
    np.testing.assert_array_equal(got, x)


def _shards(tmp_path, count=3):
    clean, names = _clean_list(tmp_path)
    csv, _ = _precomputed(tmp_path, names)
    paths = []
    for i in range(count):
        p = str(tmp_path / f"s{i}")
        run_embed(clean, p, {"embeddings": csv}, shard_index=i, shard_count=count)
        paths.append(p)
    return paths


def test_merge_refuses_a_missing_shard(tmp_path):
    paths = _shards(tmp_path)
    with pytest.raises(KurateError, match=r"expected shards 0..2 once each, got \[0, 2\]"):
        run_merge([paths[0], paths[2]], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_merge_refuses_a_repeated_shard(tmp_path):
    paths = _shards(tmp_path)
    with pytest.raises(KurateError, match="once each"):
        run_merge([paths[0], paths[1], paths[1], paths[2]], str(tmp_path / "out"))


def test_merge_refuses_an_incomplete_shard(tmp_path):
    paths = _shards(tmp_path)
    meta_path = tmp_path / "s1" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["shard"]["stop"] += 1  # claims one more row than it holds
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(KurateError, match="shard 1"):
        run_merge(paths, str(tmp_path / "out"))


def test_merge_refuses_shards_of_different_models(tmp_path):
    paths = _shards(tmp_path)
    meta_path = tmp_path / "s2" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["source"] = "some other checkpoint"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(KurateError, match="source"):
        run_merge(paths, str(tmp_path / "out"))


def test_merge_takes_a_lone_unsharded_artifact_but_not_a_mix(tmp_path):
    clean, names = _clean_list(tmp_path)
    csv, x = _precomputed(tmp_path, names)
    run_embed(clean, str(tmp_path / "whole"), {"embeddings": csv})
    run_merge([str(tmp_path / "whole")], str(tmp_path / "out"))
    np.testing.assert_array_equal(embeddings_io.read_embeddings(str(tmp_path / "out"))[1], x)
    run_embed(clean, str(tmp_path / "half"), {"embeddings": csv}, shard_index=1, shard_count=2)
    with pytest.raises(KurateError, match="not an embedding shard"):
        run_merge([str(tmp_path / "whole"), str(tmp_path / "half")], str(tmp_path / "out2"))


def test_failed_files_are_kept_per_shard(tmp_path):
    """Undecodable files listed by a shard's embed stay listed after the merge (export reports them)."""
    paths = _shards(tmp_path, count=2)
    names, x, meta = embeddings_io.read_embeddings(paths[0], mmap=False)
    meta["failed"] = [[names[-1], "cannot decode"]]
    embeddings_io.write_embeddings(paths[0], names[:-1], x[:-1], meta)
    merged = sharding.merge_embeddings(paths, str(tmp_path / "out"))
    assert merged["failed"] == [[names[-1], "cannot decode"]]
    got, _, _ = embeddings_io.read_embeddings(str(tmp_path / "out"))
    assert names[-1] not in got and len(got) == 10


@pytest.mark.parametrize("unit", [True, False])
def test_merged_normalized_flag_matches_unsharded(tmp_path, unit):
    clean, names = _clean_list(tmp_path)
    x = np.random.default_rng(1).standard_normal((len(names), 4)).astype(np.float32)
    if unit:
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    csv = str(tmp_path / "pre.csv")
    embeddings_io.write_lightly_csv(csv, names, x)
    run_embed(clean, str(tmp_path / "whole"), {"embeddings": csv})
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"s{i}"))
        run_embed(clean, paths[-1], {"embeddings": csv}, shard_index=i, shard_count=3)
    merged = sharding.merge_embeddings(paths, str(tmp_path / "merged"))
    assert merged["normalized"] is unit
    assert embeddings_io.read_embeddings_meta(str(tmp_path / "whole"))["normalized"] is unit


@pytest.mark.parametrize("count", [1, 3])
def test_the_embeddings_files_columns_travel_through_the_shards(tmp_path, count):
    """masked/selected and numeric columns of a precomputed file reach select in clean-list order."""
    clean, names = _clean_list(tmp_path, n=7)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 3)).astype(np.float32)
    file_names = [*reversed(names), "gone.png", "dup.png"]  # another order, and rows not in the list
    lines = ["filenames,embedding_0,embedding_1,embedding_2,masked,selected,al_score,comment,labels"]
    for i, n in enumerate(file_names):
        masked, selected = int(n.endswith(("01.png", "gone.png"))), int(n.endswith(("03.png", "dup.png")))
        lines.append(f"{n},{','.join(map(str, x[i]))},{masked},{selected},{i / 10},c{i},0")
    csv = tmp_path / "pre.csv"
    csv.write_text("\r\n".join(lines) + "\r\n")
    paths = []
    for i in range(count):
        p = str(tmp_path / "shards" / f"s{i}")
        run_embed(clean, p, {"embeddings": str(csv)}, shard_index=i, shard_count=count)
        paths.append(p)
    sharding.merge_embeddings(paths, str(tmp_path / "merged"))
    got_names, got_x, meta = embeddings_io.read_embeddings(str(tmp_path / "merged"))
    cols = embeddings_io.read_columns(str(tmp_path / "merged"))
    assert got_names == names and sorted(cols) == ["al_score", "masked", "selected"]  # 'comment' is text
    assert [n for n, m in zip(names, cols["masked"], strict=True) if m] == ["d/img_01.png"]
    assert [n for n, s in zip(names, cols["selected"], strict=True) if s] == ["d/img_03.png"]
    assert cols["al_score"].tolist() == [(6 - i) / 10 for i in range(7)]
    np.testing.assert_array_equal(got_x[0], x[6])
    assert meta["flags_outside"] == {
        "masked": {"count": 1, "examples": ["gone.png"]},
        "selected": {"count": 1, "examples": ["dup.png"]},
    }
