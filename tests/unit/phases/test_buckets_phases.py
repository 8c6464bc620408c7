"""The phases' library code reading from and writing to buckets (moto S3, GCS emulator), also under faults.

Each result is compared with the same work done on a local copy of the data: a bucket must change
nothing but where the bytes come from.
"""

from __future__ import annotations

import numpy as np
import pytest

from kurate.io import embeddings_io, filelist
from kurate.media.quality import REASON_DISAPPEARED, check_files
from kurate.phases.ingest import list_input
from tests.helpers import make_image_folder
from tests.storage_servers import FaultProxy, every

SMALL = {"model_name": "resnet-9", "width": 0.125, "num_ftrs": 16, "out_dim": 24}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("bucket-phases") / "photos", n=14, n_dup=2)


@pytest.fixture(params=["s3", "gs"])
def remote(request, folder):
    """(scheme, helper, bucket, input URI) with ``folder`` uploaded under ``photos/``."""
    helper = request.getfixturevalue("s3" if request.param == "s3" else "gcs")
    bucket = helper.bucket()
    helper.upload_folder(folder.root, bucket, "photos")
    return request.param, helper, bucket, f"{request.param}://{bucket}/photos"


def _through_proxy(scheme: str, helper, monkeypatch, rule) -> FaultProxy:
    proxy = FaultProxy(helper.endpoint, rule, flavor="s3" if scheme == "s3" else "gcs", paginate=True)
    proxy.__enter__()
    monkeypatch.setenv("AWS_ENDPOINT_URL" if scheme == "s3" else "STORAGE_EMULATOR_HOST", proxy.url)
    return proxy


@pytest.mark.parametrize("workers", [1, 2])
def test_ingest_and_check_from_a_flaky_bucket_match_local(remote, folder, monkeypatch, workers):
    """Every 4th request fails; an object deleted after listing is reported corrupt; the rest is exact."""
    scheme, helper, bucket, uri = remote
    local = check_files(list_input(str(folder.root)), workers=1, progress=False)
    proxy = _through_proxy(scheme, helper, monkeypatch, every(4))
    try:
        listed = list_input(uri)
        assert listed.names == list_input(str(folder.root)).names
        helper.delete(bucket, f"photos/{folder.images[3]}")  # gone between listing and reading
        res = check_files(listed, workers=workers, chunk_size=4, progress=False)
    finally:
        proxy.__exit__()
    assert sum(proxy.faults.values()) > 5
    gone = folder.images[3]
    assert dict(res.corrupt.rows())[gone] == REASON_DISAPPEARED
    assert sorted(set(res.corrupt.names) - {gone}) == sorted(local.corrupt.names)
    assert dict(zip(res.clean.names, res.clean.column("sha256"), strict=True)) == {
        k: v for k, v in zip(local.clean.names, local.clean.column("sha256"), strict=True) if k != gone
    }
    assert dict(res.duplicates.rows()) == dict(local.duplicates.rows())


def test_an_object_swapped_under_its_name_is_judged_by_what_the_store_answers(remote, folder, monkeypatch):
    """Between listing and reading, one object's bytes become another's (the proxy answers the other
    object's GET in its place): kurate judges the bytes it reads, not the listing, so it is a
    duplicate of the object whose bytes it now holds."""
    scheme, helper, bucket, uri = remote
    first, victim = folder.images[0], folder.images[4]
    (folder_a, name_a), (folder_b, name_b) = (first.split("/"), victim.split("/"))
    assert folder_a == folder_b  # so swapping the last segment (S3 path or GCS %2F-quoted name) is enough
    listed = list_input(uri)

    def swap(n: int, method: str, path: str) -> str | None:
        return "swap:" + path.replace(name_b, name_a) if method == "GET" and name_b in path else None

    proxy = _through_proxy(scheme, helper, monkeypatch, swap)
    try:
        res = check_files(listed, workers=1, progress=False)
    finally:
        proxy.__exit__()
    assert proxy.faults["swap"] == 1
    assert dict(res.duplicates.rows())[victim] == first


def test_relevant_filenames_file_in_a_bucket(remote, folder):
    scheme, helper, bucket, uri = remote
    helper.put(
        bucket, "lists/relevant.txt", f"{folder.images[0]}\n{folder.images[5]}\nnot/there.png\n".encode()
    )
    listed = list_input(uri, f"{scheme}://{bucket}/lists/relevant.txt")
    assert listed.names == sorted([folder.images[0], folder.images[5]])
    assert listed.extra["relevant_missing"] == ["not/there.png"]


def test_embedding_from_a_bucket_matches_local(remote, folder, monkeypatch, tmp_path):
    """The dataset fetches each batch with parallel reads; a vanished object is a failed row."""
    from kurate.models.embedding import embed_files

    scheme, helper, bucket, uri = remote
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    names = sorted(folder.images)
    common = {**SMALL, "input_size": 32, "pre_trained": False, "seed": 1, "progress": False, "batch_size": 4}
    local = embed_files(filelist.FileList(str(folder.root), names), num_workers=0, **common)
    helper.delete(bucket, f"photos/{names[2]}")
    proxy = _through_proxy(scheme, helper, monkeypatch, every(5))
    try:
        res = embed_files(filelist.FileList(uri, names), num_workers=0, **common)
    finally:
        proxy.__exit__()
    assert res.failed == [(names[2], REASON_DISAPPEARED)]
    assert res.names == [n for n in names if n != names[2]]
    keep = [i for i, n in enumerate(names) if n != names[2]]
    np.testing.assert_allclose(res.embeddings, local.embeddings[keep], rtol=1e-5, atol=1e-6)
    assert sum(proxy.faults.values()) > 0


def test_checkpoint_and_embeddings_files_in_a_bucket(remote, tmp_path, monkeypatch):
    """``checkpoint=`` and ``embeddings=`` URIs, and the embeddings artifact, round-trip through buckets."""
    from kurate.models.embedding import load_weights, prepare_model, save_checkpoint

    scheme, helper, bucket, _ = remote
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    model, _ = prepare_model("resnet-9", 0.125, 16, 24, pre_trained=False, seed=3)
    ckpt = f"{scheme}://{bucket}/models/m.ckpt"
    save_checkpoint(ckpt, model)
    other, _ = prepare_model("resnet-9", 0.125, 16, 24, pre_trained=False, seed=4)
    assert "kurate checkpoint" in load_weights(other, ckpt)
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert np.array_equal(a.numpy(), b.numpy()), k

    x = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    names = ["a.png", 'b,"q".png', "sub/c.png", "d.png"]
    csv_uri = f"{scheme}://{bucket}/emb/embeddings.csv"
    embeddings_io.write_lightly_csv(csv_uri, names, x)
    got_names, got_x, labels = embeddings_io.read_lightly_csv(csv_uri)
    assert got_names == names and np.array_equal(got_x, x) and labels.tolist() == [0, 0, 0, 0]

    art = f"{scheme}://{bucket}/artifacts/emb"
    embeddings_io.write_embeddings(art, names, x, {"source": "test"})
    n2, x2, meta = embeddings_io.read_embeddings(art)
    assert n2 == names and np.array_equal(x2, x) and meta["source"] == "test"

    with pytest.raises(Exception, match="does not exist"):
        load_weights(other, f"{scheme}://{bucket}/models/missing.ckpt")


def test_plan_with_bucket_locations(remote, monkeypatch):
    from kurate.config.load import compose_config
    from kurate.errors import ConfigError
    from kurate.plan import make_plan

    scheme, helper, bucket, uri = remote
    base = ["stopping_condition.n_samples=3", "run_directory=r1"]
    plan = make_plan(compose_config([f"input_dir={uri}", f"output_dir={scheme}://{bucket}/out", *base]))
    assert plan.run_dir == f"{scheme}://{bucket}/out/r1" and plan.work_dir == "" and not plan.resumed
    assert plan.task_configs["ingest"]["input_dir"] == uri
    helper.put(bucket, "out/r1/filenames/sampled_filenames.txt", b"")
    assert make_plan(
        compose_config([f"input_dir={uri}", f"output_dir={scheme}://{bucket}/out", *base])
    ).resumed
    with pytest.raises(ConfigError) as err:  # outputs inside the input, in a bucket too
        make_plan(compose_config([f"input_dir={uri}", f"output_dir={uri}/out", *base]))
    assert err.value.key == "output_dir"
    with pytest.raises(ConfigError) as err:  # an input prefix with nothing under it
        make_plan(compose_config([f"input_dir={scheme}://{bucket}/nothing", f"output_dir={uri}x", *base]))
    assert err.value.key == "input_dir"


def test_pretagging_settings_predictions_and_detector_in_a_bucket(remote, tmp_path, tiny_detector):
    """``pretagging_config`` in a bucket, with the paths in it relative to it: a Lightly predictions folder
    (read in parallel, one file per sample; a missing and a malformed file reported) and a detector
    checkpoint. The predictions equal those of the same files on local disk."""
    import json
    import shutil

    from kurate.io import predictions as preds_io
    from kurate.phases.pretag import run_pretag
    from tests.detector_helpers import CATEGORIES, make_shapes_folder

    scheme, helper, bucket, _ = remote
    make_shapes_folder(tmp_path / "shapes", [[1], [2, 2], [1, 2], [2], [1, 1]], seed=3)
    names = sorted(p.name for p in (tmp_path / "shapes").iterdir())
    clean = str(tmp_path / "clean")
    filelist.write(clean, filelist.FileList(str(tmp_path / "shapes"), names))

    cfg = tmp_path / "cfg"
    task = cfg / "preds" / ".lightly" / "predictions" / "shapes"
    task.mkdir(parents=True)
    (task.parent / "tasks.json").write_text('["shapes"]')
    cats = [{"id": i, "name": n} for i, n in enumerate(CATEGORIES)]
    (task / "schema.json").write_text(json.dumps({"task_type": "object-detection", "categories": cats}))
    for i, name in enumerate(names[:-1]):  # the last sample has no file: missing
        box = {"category_id": 1 + i % 2, "bbox": [1, 2, 3, 4], "score": 0.9}
        (task / name.replace(".png", ".json")).write_text(
            json.dumps({"file_name": name, "predictions": [box]})
        )
    (task / names[1].replace(".png", ".json")).write_text("{not json")  # reported, skipped
    (cfg / "from-preds.yaml").write_text("source: predictions\npredictions: preds\n")
    shutil.copyfile(tiny_detector, cfg / "det.pt")
    (cfg / "model.yaml").write_text(
        "source: model\narchitecture: fcos_tiny\ncheckpoint: det.pt\n"
        f"categories: [{', '.join(CATEGORIES)}]\nscore_threshold: 0.3\n"
    )
    helper.upload_folder(cfg, bucket, "cfg")
    for settings_file in ("from-preds.yaml", "model.yaml"):
        results = []
        for where in (str(cfg / settings_file), f"{scheme}://{bucket}/cfg/{settings_file}"):
            out = str(tmp_path / f"out-{len(results)}-{settings_file}")
            meta = run_pretag(clean, out, {"pretagging": True, "pretagging_config": where})
            results.append((list(preds_io.iter_records(out)), meta))
        (local_recs, local_meta), (remote_recs, remote_meta) = results
        assert remote_recs == local_recs and len(remote_recs) == len(names)
        for key in ("missing", "bad_file_count", "objects", "categories"):
            assert remote_meta.get(key) == local_meta.get(key), key
        if settings_file == "from-preds.yaml":
            assert remote_meta["missing"] == 1 and remote_meta["bad_file_count"] == 1
            assert remote_meta["source"].startswith(f"Lightly predictions {scheme}://{bucket}/cfg/preds/")
        else:
            assert remote_meta["objects"] > 0
