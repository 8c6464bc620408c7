"""Sharded embedding through kfp.local: the pipeline's ParallelFor over 2 shards and the merge give the
same embeddings (within 1e-5) and the same selection as the library's unsharded run."""

from __future__ import annotations

import json

import numpy as np

from kurate.config.load import compose_config
from kurate.io import embeddings_io, filelist
from kurate.phases.check import run_check
from kurate.phases.embed import run_embed
from kurate.phases.ingest import run_ingest
from kurate.phases.select import run_select
from kurate.pipelines.local import run_local
from kurate.plan import make_plan

OVERRIDES = [
    "stopping_condition.n_samples=4",
    "lightly.loader.num_workers=0",
    "lightly.loader.batch_size=4",
    "lightly.model.num_ftrs=16",
    "lightly.collate.input_size=32",
    "lightly.pre_trained=False",
]


def test_kfp_local_sharded_equals_unsharded(tmp_path, image_folder):
    data = image_folder(n=7, n_dup=1)
    cfg = compose_config(
        [f"input_dir={data.root}", f"output_dir={tmp_path / 'out'}", "run_directory=s3", *OVERRIDES]
    )
    plan = make_plan(cfg)
    run_local(plan, keep_work=True, embed_shards=2)

    shards = sorted((tmp_path / "out" / "s3" / ".work").glob("*/for-loop-1-iteration-*/embed/embeddings"))
    assert len(shards) == 2, "the ParallelFor ran one embed task per shard"
    sizes = sorted(embeddings_io.read_embeddings_meta(str(s))["count"] for s in shards)
    assert sizes == [3, 4]
    (merged,) = (tmp_path / "out" / "s3" / ".work").glob("*/merge/embeddings")

    lib = tmp_path / "lib"
    t = plan.task_configs
    run_ingest(str(lib / "files"), t["ingest"])
    run_check(str(lib / "files"), str(lib / "clean"), str(lib / "corrupt"), str(lib / "dups"), t["check"])
    # no embedding cache here: the library run must really embed, not reuse the pipeline's embeddings
    run_embed(str(lib / "clean"), str(lib / "emb"), {**t["embed"], "embedding_cache": ""})
    run_select(str(lib / "emb"), str(lib / "files"), str(lib / "sel"), t["select"])

    names, x, meta = embeddings_io.read_embeddings(str(merged))
    want_names, want_x, _ = embeddings_io.read_embeddings(str(lib / "emb"))
    assert names == want_names == sorted(data.images) and meta["shards"] == 2
    np.testing.assert_allclose(x, want_x, atol=1e-5)
    sampled = (tmp_path / "out" / "s3" / "filenames" / "sampled_filenames.txt").read_text().splitlines()
    assert sorted(sampled) == sorted(filelist.read(str(lib / "sel")).names)
    report = json.loads((tmp_path / "out" / "s3" / "report.json").read_text())
    assert report["counts"]["embedded"] == len(data.images) and report["counts"]["selected"] == 4
