"""Object keys are untrusted input: names that are not clean relative paths never escape, never misread.

On moto (S3) and the GCS emulator (both keep names exactly, as the real stores do) a bucket holds
images under keys that are not clean relative names below the input prefix (``..``, ``.``, empty
segments, a leading ``/`` at the bucket root, NUL) next to keys that are odd but clean (spaces,
``%``, ``+``, ``?``/``#``, NFC and NFD forms of one word, a backslash) and two keys that differ only
by an empty segment (``data/img00.jpg``, ``data//img00.jpg``) with different bytes. A proxy records
every object request: an unsafe key is listed as corrupt with its reason and never requested; every
other key is read exactly (its sha256 is that of the bytes stored under that very key).

The output side: every output path kurate builds from an input name goes through one helper,
:func:`kurate.io.names.inside`, which refuses a name that would not stay inside its folder; the
dump (``data/sampled``, datapool ``samples/``) and pretagging's debug images are checked with
hostile names into local folders, S3 and GCS.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from kurate.io import filelist, storage
from kurate.io.names import UnsafeNameError, inside, unsafe_reason
from kurate.media.quality import check_files
from kurate.phases.ingest import list_input
from tests.helpers import draw_image
from tests.storage_servers import FaultProxy

#: key below ``data/`` → (its relative name, words its reason must contain)
UNSAFE = {
    "data/../../../../ESCAPED.jpg": ("../../../../ESCAPED.jpg", "'..'"),
    "data/sub/../up.jpg": ("sub/../up.jpg", "'..'"),
    "data//double.jpg": ("/double.jpg", "starts with '/'"),
    "data/a//b.jpg": ("a//b.jpg", "empty segment"),
    "data/./dot.jpg": ("./dot.jpg", "'.'"),
    "data/nul\x00.jpg": ("nul\x00.jpg", "NUL"),
}
#: odd but clean keys: read exactly, under exactly these names
ODD = [
    "data/img00.jpg",
    "data/sp ace.jpg",
    "data/per%25cent.jpg",
    "data/plus+sign.jpg",
    "data/q?x#y.jpg",
    "data/caf\u00e9.jpg",  # NFC
    "data/cafe\u0301.jpg",  # NFD: another key
    "data/back\\slash.jpg",
    "data/sub/deeper/img.jpg",
]
#: differs from data/img00.jpg only by an empty segment; other bytes
TWIN = "data//img00.jpg"


def _jpeg(i: int) -> bytes:
    buf = io.BytesIO()
    draw_image(i).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _object_key(scheme: str, bucket: str, path: str) -> str | None:
    """The object key a GET request reads (None for listings and other requests)."""
    parts = urlsplit(path)
    if scheme == "s3":
        head = f"/{bucket}/"
        return unquote(parts.path[len(head) :]) if parts.path.startswith(head) else None
    marker = f"/b/{bucket}/o/"
    if marker not in parts.path:
        return None
    return unquote(parts.path.split(marker, 1)[1])


@pytest.fixture(params=["s3", "gs"])
def hostile(request, monkeypatch):
    """A bucket of hostile and odd keys; kurate talks to it through a recording proxy."""
    scheme = request.param
    helper = request.getfixturevalue("s3" if scheme == "s3" else "gcs")
    bucket = helper.bucket()
    stored: dict[str, bytes] = {}
    for i, key in enumerate([*UNSAFE, *ODD, TWIN]):
        stored[key] = _jpeg(i)
        helper.put(bucket, key, stored[key])
    assert sorted(helper.keys(bucket)) == sorted(stored)  # the store kept every name exactly
    gets: list[str] = []

    def record(n: int, method: str, path: str) -> None:
        key = _object_key(scheme, bucket, path)
        if method == "GET" and key is not None:
            gets.append(key)

    proxy = FaultProxy(helper.endpoint, record, flavor="s3" if scheme == "s3" else "gcs")
    proxy.__enter__()
    monkeypatch.setenv("AWS_ENDPOINT_URL" if scheme == "s3" else "STORAGE_EMULATOR_HOST", proxy.url)
    yield scheme, helper, bucket, stored, gets
    proxy.__exit__()


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    "name, words",
    [
        ("..", "'..'"),
        ("../x.jpg", "'..'"),
        ("a/../../x.jpg", "'..'"),
        ("a/..", "'..'"),
        ("/etc/passwd", "starts with '/'"),
        ("//x.jpg", "starts with '/'"),
        ("a//b.jpg", "empty segment"),
        ("a/b/", "empty segment"),
        ("./x.jpg", "'.'"),
        ("a/./b.jpg", "'.'"),
        ("x\x00.jpg", "NUL"),
        ("", "empty"),
    ],
)
def test_unsafe_names_have_a_reason(name: str, words: str) -> None:
    reason = unsafe_reason(name)
    assert reason.startswith("unsafe name: ") and words in reason


@pytest.mark.parametrize(
    "name",
    ["x.jpg", "a/b/c.png", "sp ace.jpg", "..x.jpg", "x...jpg", "a/.hidden.jpg", "...", "back\\slash.jpg",
     "per%25cent.jpg", "caf\u00e9.jpg", "q?x#y.jpg", "x.jpg "],
)  # fmt: skip
def test_clean_relative_names_are_safe(name: str) -> None:
    assert unsafe_reason(name) == ""


@pytest.mark.parametrize("folder", ["/tmp/out", "out", "s3://b/out", "gs://b/out/", "s3://b"])
def test_inside_joins_exactly_or_refuses(folder: str) -> None:
    base = folder.rstrip("/")
    assert inside(folder, "a/b c.png") == f"{base}/a/b c.png"
    for bad in UNSAFE.values():
        with pytest.raises(UnsafeNameError) as err:
            inside(folder, bad[0])
        assert err.value.name == bad[0] and bad[1] in str(err.value)


def test_sample_locations_are_built_by_the_helper_too() -> None:
    """Reading an input goes through the same check: an unsafe name is never turned into a location."""
    assert filelist.sample_uri("s3://b/data", "x y.jpg") == "s3://b/data/x y.jpg"
    with pytest.raises(UnsafeNameError):
        filelist.sample_uri("s3://b/data", "../../x.jpg")
    with pytest.raises(UnsafeNameError):
        filelist.sample_uri("/data", "/etc/passwd")


# --------------------------------------------------------------------------- listing and reading


def test_unsafe_keys_are_corrupt_and_never_read_others_read_exactly(hostile) -> None:
    scheme, _, bucket, stored, gets = hostile
    root = f"{scheme}://{bucket}/data"
    listed = list_input(root)
    rel = {k: k[len("data/") :] for k in stored}
    assert listed.names == sorted(rel.values())  # every key listed, under its exact relative name
    res = check_files(listed, workers=1, progress=False)
    reasons = dict(res.corrupt.rows())
    for name, words in UNSAFE.values():
        assert reasons[name].startswith("unsafe name: ") and words in reasons[name], name
    assert set(reasons) == {n for n, _ in UNSAFE.values()} | {rel[TWIN]}
    assert "starts with '/'" in reasons[rel[TWIN]]  # '/img00.jpg': told apart from 'img00.jpg'
    clean = dict(zip(res.clean.names, res.clean.column("sha256"), strict=True))
    assert set(clean) == {rel[k] for k in ODD}
    for key in ODD:  # read exactly: the bytes stored under that very key
        assert clean[rel[key]] == hashlib.sha256(stored[key]).hexdigest(), key
    assert not res.duplicates.names  # data//img00.jpg never read, so never a "duplicate" of img00.jpg
    assert sorted(set(gets)) == sorted(ODD)  # no unsafe key was ever requested


def test_unsafe_keys_at_the_bucket_root(request) -> None:
    """With the bucket root as input, a key with a leading '/' is unsafe; the rest is read exactly."""
    for scheme, fixture in (("s3", "s3"), ("gs", "gcs")):
        helper = request.getfixturevalue(fixture)
        bucket = helper.bucket()
        helper.put(bucket, "/data/leadslash.jpg", _jpeg(1))
        helper.put(bucket, "data/fine.jpg", _jpeg(2))
        listed = list_input(f"{scheme}://{bucket}")
        assert listed.names == ["/data/leadslash.jpg", "data/fine.jpg"]
        res = check_files(listed, workers=1, progress=False)
        assert "starts with '/'" in dict(res.corrupt.rows())["/data/leadslash.jpg"]
        assert dict(zip(res.clean.names, res.clean.column("sha256"), strict=True)) == {
            "data/fine.jpg": hashlib.sha256(_jpeg(2)).hexdigest()
        }


def test_an_unsafe_video_key_is_not_opened_at_listing(hostile) -> None:
    """Ingest probes videos (frame counts); an unsafe video key stays one corrupt row, never opened."""
    scheme, helper, bucket, _, gets = hostile
    helper.put(bucket, "data/clips/../../evil.mp4", b"not really a video")
    listed = list_input(f"{scheme}://{bucket}/data")
    assert "clips/../../evil.mp4" in listed.names
    assert not [g for g in gets if g.endswith("evil.mp4")]
    res = check_files(listed, workers=1, progress=False)
    assert "'..'" in dict(res.corrupt.rows())["clips/../../evil.mp4"]
    assert not [g for g in gets if g.endswith("evil.mp4")]


# --------------------------------------------------------------------------- writing


def _files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


@pytest.fixture(params=["local", "s3", "gs"])
def out_folder(request, tmp_path):
    """(output folder URI, function listing everything written anywhere in its store)."""
    if request.param == "local":
        (tmp_path / "a" / "b").mkdir(parents=True)
        return str(tmp_path / "a" / "b" / "out"), lambda: _files_under(tmp_path)
    helper = request.getfixturevalue("s3" if request.param == "s3" else "gcs")
    bucket = helper.bucket()
    return f"{request.param}://{bucket}/a/b/out", lambda: {f"{bucket}/{k}" for k in helper.keys(bucket)}


def test_dump_refuses_names_that_would_leave_its_folder(tmp_path, out_folder) -> None:
    """Were an unsafe name ever to reach the dump (a datapool's samples/ uses the same code), it is
    reported as not dumped and nothing is written outside the output folder."""
    from kurate.outputs.export import dump_samples

    out, everything = out_folder
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.jpg").write_bytes(_jpeg(3))
    before = everything()
    names = ["ok.jpg", *(n for n, _ in UNSAFE.values() if "\x00" not in n)]
    failed = dump_samples(str(src), names, storage.join(out, "data", "sampled"), -1, "png")
    assert sorted(failed) == sorted(names[1:])
    written = everything() - before
    prefix = out.split("://", 1)[-1] if "://" in out else os.path.relpath(out, tmp_path)
    assert written and all(w.startswith(prefix + "/") for w in written), written
    assert {w.rsplit("/", 1)[-1] for w in written} == {"ok.png"}


def test_pretag_debug_images_refuse_names_that_would_leave_their_folder(out_folder) -> None:
    from PIL import Image

    from kurate.models.pretag import DebugWriter

    out, everything = out_folder
    before = everything()
    names = ["ok.jpg", "../../escaped.jpg", "/abs.jpg"]
    writer = DebugWriter(storage.join(out, "debug"), names, [{"id": 0, "name": "thing"}], -1)
    img = Image.new("RGB", (16, 16))
    for row in range(len(names)):
        writer.add(row, img, [])
    written = everything() - before
    assert writer.written == 1 and len(written) == 1
    assert next(iter(written)).endswith("/debug/ok.jpg")


def test_a_predictions_task_name_that_would_leave_its_folder_is_refused(tmp_path) -> None:
    """Task names come from the user's ``tasks.json``: input too, joined through the same helper."""
    import json

    from kurate.io import predictions

    preds = tmp_path / "preds" / ".lightly" / "predictions"
    preds.mkdir(parents=True)
    (preds / "tasks.json").write_text(json.dumps(["../../../elsewhere"]))
    with pytest.raises(predictions.BadPredictions, match="'..'"):
        predictions.lightly_task_dir(str(tmp_path / "preds"), "../../../elsewhere")
    with pytest.raises(predictions.BadPredictions, match="'..'"):
        predictions.lightly_task_dir(str(tmp_path / "preds"))
    assert predictions.lightly_file_for("s3://b/task", "sub/a b.png") == "s3://b/task/sub/a b.json"
