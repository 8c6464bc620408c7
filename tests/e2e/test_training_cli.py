"""End to end: `kurate ... enable_training=True lightly.trainer.max_epochs=2` through the real console
script trains, embeds with the trained model and selects; its checkpoint_latest.ckpt then reproduces the
same embeddings through `checkpoint=` in a run without training."""

from __future__ import annotations

import json

import torch

from tests.e2e.test_cli import FAST, run_kurate
from tests.helpers import draw_image, make_image_folder

SMALL = [*FAST, "lightly.model.name=resnet-9", "lightly.model.width=0.125", "lightly.loader.batch_size=4"]


def test_kurate_trains_embeds_with_the_trained_model_and_selects(tmp_path):
    data = make_image_folder(tmp_path / "photos", n=12, n_dup=1)
    out = tmp_path / "out"
    proc = run_kurate(
        f"input_dir={data.root}",
        f"output_dir={out}",
        "run_directory=trained",
        "stopping_condition.n_samples=4",
        "datapool.name=pool",
        "enable_training=True",
        "lightly.trainer.max_epochs=2",
        "lightly.optimizer.lr=0.5",
        *SMALL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = out / "trained"
    log = proc.stdout + proc.stderr  # kfp.local relays the tasks' output
    assert "epoch 2/2: loss" in log and "img/s=" in log
    latest = run_dir / "checkpoint_latest.ckpt"
    assert latest.is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    ckpt = torch.load(latest, weights_only=True)
    assert ckpt["kurate"]["epochs"] == 2 and any(k.startswith("model.backbone.") for k in ckpt["state_dict"])

    report = json.loads((run_dir / "report.json").read_text())
    assert report["counts"]["selected"] == 4 and report["counts"]["embedded"] == len(data.images)
    emb = report["embedding"]
    assert emb["source"] == f"trained in this run: {latest}"
    assert emb["training"]["epochs"] == 2 and emb["training"]["resumed_from_epoch"] == 0
    # the report's time per phase lists training (from the model's meta) and the sharded embed's span
    durations = report["phase_durations_s"]
    assert list(durations)[:4] == ["ingest", "check", "train", "embed"]
    assert durations["train"] == round(emb["training"]["seconds"], 3) and durations["embed"] > 0
    assert len((run_dir / "filenames" / "sampled_filenames.txt").read_text().splitlines()) == 4

    # the saved model loads back through checkpoint= (no training): the very same embeddings
    again = run_kurate(
        f"input_dir={data.root}",
        f"output_dir={out}",
        "run_directory=reloaded",
        "stopping_condition.n_samples=4",
        f"checkpoint={latest}",
        *SMALL,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    reloaded = out / "reloaded"
    assert not (reloaded / "checkpoint_latest.ckpt").exists()
    assert (
        json.loads((reloaded / "report.json").read_text())["embedding"]["source"]
        == f"lightly checkpoint {latest}"
    )
    assert (reloaded / "data" / "embeddings.csv").read_bytes() == (
        run_dir / "data" / "embeddings.csv"
    ).read_bytes()
    assert (reloaded / "filenames" / "sampled_filenames.txt").read_text() == (
        run_dir / "filenames" / "sampled_filenames.txt"
    ).read_text()

    # the datapool keeps the trained model; training again against it is refused at start (its embeddings
    # come from that model), embedding with the stored model is accepted
    pool = out / "datapool" / "pool"
    assert (pool / "checkpoint_latest.ckpt").read_bytes() == latest.read_bytes()
    assert (pool / "model" / "checkpoint.ckpt").read_bytes() == latest.read_bytes()
    refused = run_kurate(
        f"input_dir={data.root}",
        f"output_dir={out}",
        "stopping_condition.n_samples=2",
        "datapool.name=pool",
        "enable_training=True",
        *SMALL,
    )
    assert refused.returncode == 2 and refused.stderr.startswith("kurate: error: enable_training:")
    assert refused.stderr.strip().count("\n") == 0
    assert "checkpoint_latest.ckpt" in refused.stderr and "datapool" in refused.stderr
    more = run_kurate(
        f"input_dir={data.root}",
        f"output_dir={out}",
        "run_directory=more",
        "stopping_condition.n_samples=2",
        "datapool.name=pool",
        "datasource.process_all=True",
        f"checkpoint={pool / 'checkpoint_latest.ckpt'}",
        *SMALL,
    )
    assert more.returncode == 0, more.stderr[-3000:]
    assert json.loads((out / "more" / "report.json").read_text())["counts"]["selected"] == 2

    # Lightly's Cityscapes-then-KITTI example: the next dataset, training off and no checkpoint given. The
    # datapool keeps its model: the run embeds with it (it used to embed with other weights and fail in
    # select, after embedding everything).
    kitti = tmp_path / "kitti"
    kitti.mkdir()
    for i in range(6):
        draw_image(300 + i).save(kitti / f"frame_{i}.png")
    next_set = run_kurate(
        f"input_dir={kitti}",
        f"output_dir={out}",
        "run_directory=kitti",
        "stopping_condition.n_samples=2",
        "datapool.name=pool",
        "enable_training=False",
        *SMALL,
    )
    assert next_set.returncode == 0, next_set.stderr[-3000:]
    kitti_report = json.loads((out / "kitti" / "report.json").read_text())
    assert kitti_report["embedding"]["source"] == f"lightly checkpoint {pool / 'checkpoint_latest.ckpt'}"
    assert kitti_report["datapool"]["updated"] and kitti_report["counts"]["selected"] == 2
    # a model the datapool was not built with is refused at start, before anything runs
    other = run_kurate(
        f"input_dir={kitti}",
        f"output_dir={out}",
        "run_directory=other-model",
        "stopping_condition.n_samples=2",
        "datapool.name=pool",
        *[o for o in SMALL if not o.startswith("lightly.model.num_ftrs")],
        "lightly.model.num_ftrs=8",
    )
    assert other.returncode == 2 and other.stderr.startswith("kurate: error: lightly.model.num_ftrs:")
    assert str(pool) in other.stderr and not (out / "other-model").exists()


def test_killed_training_is_resumed_by_rerunning_kurate(tmp_path):
    """kill -9 while the train task runs; the same command resumes training from <run>/checkpoints/last.ckpt
    (kfp.local's scratch differs per run; the run folder does not) and finishes the run."""
    import os
    import signal
    import subprocess
    import time

    from tests.e2e.test_cli import KURATE

    data = make_image_folder(tmp_path / "photos", n=12, n_dup=0, corrupt=False)
    epochs = 12
    args = [
        f"input_dir={data.root}",
        f"output_dir={tmp_path / 'out'}",
        "run_directory=r",
        "stopping_condition.n_samples=3",
        "enable_training=True",
        f"lightly.trainer.max_epochs={epochs}",
        *SMALL,
    ]
    proc = subprocess.Popen(
        [KURATE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    last = tmp_path / "out" / "r" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and not last.exists():
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = torch.load(last, weights_only=True)["epoch"] + 1
    assert 1 <= done < epochs and not (tmp_path / "out" / "r" / "report.json").exists()

    again = run_kurate(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    training = json.loads((tmp_path / "out" / "r" / "report.json").read_text())["embedding"]["training"]
    assert training["resumed_from_epoch"] >= done and training["epochs"] == epochs
    assert training["epochs_this_run"] == epochs - training["resumed_from_epoch"] < epochs
    assert "resuming training from" in again.stdout + again.stderr
