"""The crash-point walk (SQLite's crash tests, on kurate): kill a run at a durable write, rerun, and the
outputs and the datapool must equal an uninterrupted run's.

Every durable write goes through the storage write primitives, which are crash points by
construction (:mod:`kurate.io.crash`): a new write site needs no registration to be walked. Two
runs cover the write sites: a datapool run (a datapool with a previous state, keep_history=False,
upload_dataset, dump_dataset, pretagging predictions with append_weak_labels) and a training run
(the report, a video). The default suite runs each once, traced by a real ``kurate`` process, and
checks that every kind of durable state passes a crash point (seconds); the slow suite (``make
test-all``) kills at the first point of each site (the function that asks for the write; the
training run only at the sites the datapool run does not have), then at every point (training over
two epochs, so a kill can land between them), and checks that the fast forked harness hits the
points a real process does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import make_image_folder

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "lightly.collate.input_size=16",
    "lightly.loader.batch_size=4",
    "lightly.loader.num_workers=0",
    "lightly.model.num_ftrs=8",
    "lightly.model.out_dim=8",
    "lightly.model.name=resnet-9",
    "lightly.model.width=0.125",
    "lightly.pre_trained=False",
]


def _driver(spec: dict, tmp: Path) -> dict:
    spec_path, result_path = tmp / "spec.json", tmp / "result.json"
    spec_path.write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KURATE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.crash.driver", str(spec_path), str(result_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=6 * 3600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(result_path.read_text())
    assert "error" not in result, result["error"]
    return result


def _predictions(root: Path, names: list[str], where: Path) -> Path:
    lines = [
        json.dumps(
            {"file_name": n, "predictions": [{"category_id": i % 2, "bbox": [1, 1, 8, 6], "score": 0.9}]}
        )
        for i, n in enumerate(names)
    ]
    (where / "preds.jsonl").write_text("\n".join(lines) + "\n")
    (where / "pretag.yaml").write_text(
        f"source: predictions\npredictions: {where / 'preds.jsonl'}\ncategories: [cat, dog]\n"
    )
    return where / "pretag.yaml"


@pytest.fixture(scope="module")
def datapool_setup(tmp_path_factory):
    """An input, a datapool holding an earlier run's state, and the walk's arguments."""
    from tests.crash import harness  # noqa: F401  (fails early if the harness cannot load)

    tmp = tmp_path_factory.mktemp("walk-datapool")
    first = make_image_folder(tmp / "first", n=4, n_dup=0, corrupt=False)
    data = make_image_folder(tmp / "in", n=10, n_dup=1)
    pretag = _predictions(data.root, data.images[:6], tmp)
    prep = tmp / "prepared"
    common = ["datapool.name=pool", "stopping_condition.n_samples=3", *TINY]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KURATE_")}
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("kurate")),
            f"input_dir={first.root}",
            f"output_dir={prep}",
            "run_directory=first",
            "upload_report=False",
            *common,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import shutil

    shutil.rmtree(prep / "first")  # keep only the datapool (and its cache)
    args = [
        f"input_dir={data.root}",
        "run_directory=r",
        *common,
        "datapool.keep_history=False",
        "upload_dataset=True",
        "dump_dataset=True",
        "output_image_size=20",
        "pretagging=True",
        f"pretagging_config={pretag}",
        "append_weak_labels=True",
        "upload_report=False",
    ]
    return {"args": args, "prepare": str(prep), "tmp": tmp}


def _training_setup(tmp_path_factory, epochs: int) -> dict:
    from tests.video_helpers import make_video

    tmp = tmp_path_factory.mktemp(f"walk-training-{epochs}")
    data = make_image_folder(tmp / "in", n=8, n_dup=1)
    make_video(data.root / "clips" / "cam.mp4", n=6, size=(32, 24))
    args = [
        f"input_dir={data.root}",
        "run_directory=r",
        "stopping_condition.n_samples=4",
        *TINY,
        "enable_training=True",
        f"lightly.trainer.max_epochs={epochs}",
        "lightly.loader.drop_last=False",
        "upload_report=True",
        "n_example_images=2",
    ]
    return {"args": args, "prepare": None, "tmp": tmp}


@pytest.fixture(scope="module")
def training_setup(tmp_path_factory):
    """Training (one epoch: every training write site once), the report, a video."""
    return _training_setup(tmp_path_factory, 1)


@pytest.fixture(scope="module")
def training_setup_resume(tmp_path_factory):
    """Two epochs: a kill at the second epoch's checkpoints resumes from the first (slow suite)."""
    return _training_setup(tmp_path_factory, 2)


@pytest.fixture(scope="module")
def objects_setup(tmp_path_factory):
    """Object-level selection over a Lightly predictions task: crops.csv, *_crops.txt, the crop dataset."""
    from tests.unit.phases.test_object_level import make_world

    tmp = tmp_path_factory.mktemp("walk-objects")
    make_world(tmp / "in")
    args = [
        f"input_dir={tmp / 'in'}",
        "run_directory=r",
        "object_level.task_name=vehicles",
        "object_level.padding=0.1",
        "stopping_condition.n_samples=3",
        *TINY,
        "upload_report=False",
    ]
    return {"args": args, "prepare": None, "tmp": tmp}


@pytest.fixture(scope="module")
def columns_setup(tmp_path_factory):
    """A precomputed embeddings file with Lightly's masked/selected columns and a score column: the
    embeddings artifact's columns.npz."""
    tmp = tmp_path_factory.mktemp("walk-columns")
    data = make_image_folder(tmp / "in", n=8, n_dup=1)
    lines = ["filenames,embedding_0,embedding_1,masked,selected,score,labels"]
    for k, n in enumerate(sorted(data.images)):
        lines.append(f"{n},{k % 3}.5,{k * 0.25:.2f},{int(k == 1)},{int(k == 2)},{k / 10},0")
    (tmp / "emb.csv").write_text("\n".join(lines) + "\n")
    args = [
        f"input_dir={data.root}",
        "run_directory=r",
        f"embeddings={tmp / 'emb.csv'}",
        "stopping_condition.n_samples=4",
        "upload_report=False",
    ]
    return {"args": args, "prepare": None, "tmp": tmp}


@pytest.fixture(scope="module")
def datasource_setup(tmp_path_factory):
    """Lightly's datasource mode (issue 15a): its state is a datapool named after the datasource."""
    tmp = tmp_path_factory.mktemp("walk-datasource")
    data = make_image_folder(tmp / "in", n=8, n_dup=1)
    args = [
        f"datasource.dataset_id={data.root}",
        "run_directory=r",
        "stopping_condition.n_samples=3",
        *TINY,
        "upload_report=False",
    ]
    return {"args": args, "prepare": None, "tmp": tmp}


def _walk(setup: dict, select: str, name: str, skip_sites: list[str] | None = None) -> dict:
    """The driver's result; ``select``: "sites" (first point of each), "all", or "none" (trace only)."""
    work = setup["tmp"] / f"{name}-{select}"
    work.mkdir()
    spec = {
        "args": setup["args"],
        "prepare": setup["prepare"],
        "workdir": str(work),
        "select": select,
        "skip_sites": skip_sites or [],
    }
    return _driver(spec, work)


def _real_trace(setup: dict, where: Path) -> tuple[list[dict[str, str]], Path]:
    """The crash points a real ``kurate`` process hits in ``setup``'s run: (trace, output folder)."""
    import shutil

    from tests.crash.driver import read_trace

    out = where / "out"
    if setup["prepare"]:
        shutil.copytree(setup["prepare"], out)
    trace = where / "real.trace"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KURATE_")}
    env["KURATE_CRASH_TRACE"] = str(trace)
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("kurate")), *setup["args"], f"output_dir={out}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return read_trace(trace), out


@pytest.fixture(scope="module")
def datapool_trace(datapool_setup, tmp_path_factory):
    return _real_trace(datapool_setup, tmp_path_factory.mktemp("trace-datapool"))


@pytest.fixture(scope="module")
def datapool_walk(datapool_setup) -> dict:
    """The datapool run walked at every write site (the training walk skips the sites it covered)."""
    return _walk(datapool_setup, "sites", "datapool")


def _assert_walked(result: dict) -> None:
    assert result["points"] > 20, result["points"]
    failures = [
        f"point {f['k']} ({f['site']} → {f['target']}): "
        + "; ".join(f.get("diffs") or [f.get("problem", "")])
        for f in result["failures"]
    ]
    assert not failures, "\n".join(failures)
    assert result["walked"], "no point was walked"


#: Every kind of durable state of a datapool run (the issue's list): each must be a crash point.
DATAPOOL_WRITES = [
    "/r/.kurate/run.json",  # the run marker
    "/r/.kurate/lock.json",
    "/files.csv",
    "/embeddings.npy",
    ".npz",  # embedding-cache chunks
    "/r/filenames/sampled_filenames.txt",
    "/r/filenames/corrupt_filenames.txt",
    "/r/data/embeddings.csv",
    "/r/data/metadata.csv",  # the check's computed lightly.* metadata (issue 18)
    "/r/data/sampled/",
    "/r/data/weak_labels.json",
    "/r/report.json",
    "/datapool/pool/versions/00000002.json",
    "/datapool/pool/datapool_latest.csv",
    "/datapool/pool/weak_labels_latest.json",
    "/datapool/pool/samples/",
    "/processed.csv",
    "/sha256.txt",
]
#: ... and of a training run with a video and the HTML report.
TRAINING_WRITES = [
    "/r/checkpoints/last.ckpt",
    "/r/checkpoint_latest.ckpt",
    "/r/report.html",
    "/r/plots/",
    "video_timeline.json",
]


def _assert_covers(targets: list[str], must: list[str]) -> None:
    missing = [m for m in must if not any(m in t for t in targets)]
    assert not missing, f"durable writes without a crash point: {missing}"


def test_every_durable_write_of_a_datapool_run_is_a_crash_point(datapool_trace):
    """A real ``kurate`` run, traced: every kind of durable state passes a crash point (the walk's
    kills, slow suite, need nothing else), removing the scratch and the replaced state too."""
    points, _ = datapool_trace
    targets = [p["target"] for p in points]
    _assert_covers(targets, DATAPOOL_WRITES)
    assert any(t.endswith("/r/.work") for t in targets)  # removing the scratch is a point too
    assert any("/datapool/pool/history/00000001_" in t for t in targets)  # and removing the old state
    assert all(p["site"] != "?" and ":" in p["site"] for p in points)  # each names the function writing


def test_every_durable_write_of_a_training_run_is_a_crash_point(training_setup, tmp_path):
    points, _ = _real_trace(training_setup, tmp_path)
    _assert_covers([p["target"] for p in points], TRAINING_WRITES)


#: ... of object-level selection, and of a precomputed embeddings file's extra columns.
OBJECT_WRITES = ["/r/data/crops.csv", "_crops.txt", "/r/crops/in-crops/"]
COLUMNS_WRITES = ["/columns.npz"]


def test_every_durable_write_of_an_object_level_run_is_a_crash_point(objects_setup, tmp_path):
    points, _ = _real_trace(objects_setup, tmp_path)
    _assert_covers([p["target"] for p in points], OBJECT_WRITES)


def test_every_durable_write_of_a_run_with_embedding_columns_is_a_crash_point(columns_setup, tmp_path):
    points, _ = _real_trace(columns_setup, tmp_path)
    _assert_covers([p["target"] for p in points], COLUMNS_WRITES)


def test_the_datasource_modes_state_is_written_at_crash_points(datasource_setup, tmp_path):
    points, _ = _real_trace(datasource_setup, tmp_path)
    state = [p["target"] for p in points if "/datapool/datasource-" in p["target"]]
    _assert_covers(state, ["/versions/00000001.json", "/datapool_latest.csv", "/history/"])


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("which", ["objects", "columns"])
def test_every_object_level_and_columns_write_site_killed_and_rerun_equals_an_uninterrupted_run(
    which, objects_setup, columns_setup, datapool_walk
):
    """Only at the sites the datapool walk did not kill at."""
    setup = objects_setup if which == "objects" else columns_setup
    result = _walk(setup, "sites", which, skip_sites=datapool_walk["sites"])
    assert not result["failures"], result["failures"]
    _assert_covers(
        [p["target"] for p in result["trace"]], OBJECT_WRITES if which == "objects" else COLUMNS_WRITES
    )
    print(f"\n{len(result['walked'])} of {result['points']} points walked in {result['seconds']} s")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_every_datapool_write_site_killed_and_rerun_equals_an_uninterrupted_run(datapool_walk):
    result = datapool_walk
    _assert_walked(result)
    _assert_covers([p["target"] for p in result["trace"]], DATAPOOL_WRITES)
    print(f"\n{len(result['walked'])} of {result['points']} points walked in {result['seconds']} s")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_every_training_and_report_write_site_killed_and_rerun_equals_an_uninterrupted_run(
    training_setup, datapool_walk
):
    """Only at the sites the datapool walk did not kill at: training, the report, videos."""
    result = _walk(training_setup, "sites", "training", skip_sites=datapool_walk["sites"])
    _assert_walked(result)
    walked = {w["site"] for w in result["walked"]}
    assert any(w.startswith("kurate.models.training:") for w in walked), walked
    assert any(w.startswith("kurate.outputs.report:") for w in walked), walked
    _assert_covers([p["target"] for p in result["trace"]], TRAINING_WRITES)
    print(f"\n{len(result['walked'])} of {result['points']} points walked in {result['seconds']} s")


@pytest.mark.slow
@pytest.mark.timeout(6 * 3600)
def test_full_walk_datapool_run(datapool_setup):
    _assert_walked(_walk(datapool_setup, "all", "datapool"))


@pytest.mark.slow
@pytest.mark.timeout(6 * 3600)
def test_full_walk_training_run(training_setup_resume):
    _assert_walked(_walk(training_setup_resume, "all", "training"))


def _norm_points(points: list[dict[str, str]], out: Path) -> list[tuple[str, str]]:
    """(site, target) with what differs from run to run blurred: kfp.local's run ids, state
    folders' times, the embedding cache's random chunk names."""
    import re

    blur = re.compile(r"/\.work/[^/]+/|_\d{8}T\d{6}Z_[^/]*|/chunks/[^/]+\.npz$")
    return sorted((p["site"], blur.sub("/X/", p["target"].replace(str(out), "OUT"))) for p in points)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_walk_harness_hits_the_points_of_the_real_command(datapool_setup, datapool_trace):
    """The walk forks kfp.local's tasks for speed: a real ``kurate`` process must hit the same points."""
    real, real_out = datapool_trace
    walk = _walk(datapool_setup, "none", "compare-real")
    forked_out = datapool_setup["tmp"] / "compare-real-none" / "out"
    assert _norm_points(real, real_out) == _norm_points(walk["trace"], forked_out)
