"""Training (SimCLR with lightly's building blocks under PyTorch Lightning): key mapping, outputs, round
trip through ``checkpoint=``, lightly-CLI compatibility both ways, skipped corrupt files, and resume."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from kurate.errors import ConfigError, KurateError
from kurate.io import filelist
from kurate.io.filelist import FileList
from kurate.media import image
from kurate.models import embedding, model_io, training
from kurate.phases.embed import run_embed
from kurate.phases.train import run_train
from tests.helpers import make_structure_folder

MODEL = {"name": "resnet-9", "width": 0.125, "num_ftrs": 16, "out_dim": 24}
EMBED = {"model_name": "resnet-9", "width": 0.125, "num_ftrs": 16, "out_dim": 24, "input_size": 32}


def train_config(**over):
    """Train-task keys (as kurate.plan builds them) for a tiny, fast model."""
    lightly = {
        "model": dict(MODEL),
        "collate": {"input_size": 32},
        "loader": {"batch_size": 8, "num_workers": 0, "shuffle": True, "drop_last": True},
        "trainer": {"max_epochs": 2, "enable_model_summary": False},
        "optimizer": {"lr": 0.5, "weight_decay": 1e-5},
        "pre_trained": False,
        "seed": 3,
    }
    for key, value in over.pop("lightly", {}).items():
        lightly[key] = {**lightly[key], **value} if isinstance(value, dict) else value
    return {"enable_training": True, "lightly": lightly, **over}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """24 small images (4 structure groups) and their clean list."""
    root = tmp_path_factory.mktemp("tiny") / "images"
    labels = make_structure_folder(root, n_per_group=6, size=32, seed=1)
    files = FileList(root=str(root), names=sorted(labels))
    clean = tmp_path_factory.mktemp("lists") / "clean"
    filelist.write(str(clean), files)
    return files, str(clean)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- keys


def _settings(**kw):
    return training.TrainSettings(**kw)


def test_trainer_keys_map_to_lightning_2(caplog):
    r = training.resolve_trainer
    assert r(_settings(), cuda_available=False) == {
        "accelerator": "cpu",
        "devices": 1,
        "precision": "32-true",
    }
    assert r(_settings(), cuda_available=True)["accelerator"] == "gpu"  # GPU when present
    assert r(_settings(gpus=1), cuda_available=True)["accelerator"] == "gpu"  # lightly's default
    assert r(_settings(gpus=1), cuda_available=False)["accelerator"] == "cpu"
    assert r(_settings(gpus=0), cuda_available=True)["accelerator"] == "cpu"
    assert r(_settings(accelerator="cpu", gpus=1), cuda_available=True)["accelerator"] == "cpu"
    assert r(_settings(precision=16), cuda_available=True)["precision"] == "16-mixed"
    assert r(_settings(precision="bf16"), cuda_available=False)["precision"] == "bf16-mixed"
    assert r(_settings(precision="64"), cuda_available=False)["precision"] == "64-true"
    caplog.set_level(logging.WARNING, logger="kurate.models.training")
    assert r(_settings(precision=16), cuda_available=False)["precision"] == "32-true"
    assert "needs a GPU" in caplog.text and "32-bit" in caplog.text
    with pytest.raises(KurateError, match="no CUDA GPU is visible"):
        r(_settings(accelerator="gpu"), cuda_available=False)
    for bad, key in (
        ({"gpus": 2}, "lightly.trainer.gpus"),
        ({"devices": 4}, "lightly.trainer.devices"),
        ({"accelerator": "tpu"}, "lightly.trainer.accelerator"),
        ({"precision": "8"}, "lightly.trainer.precision"),
    ):
        with pytest.raises(ConfigError) as err:
            r(_settings(**bad), cuda_available=True)
        assert err.value.key == key


def test_settings_from_task_keys():
    s = training.TrainSettings.from_config(
        train_config(
            lightly={"collate": {"kernel_size": None, "sigmas": [0.1, 1.0], "rr_degrees": [-5, 5]}},
            checkpoint="/x.ckpt",
            max_image_pixels=1000,
        )
    )
    assert s.model == embedding.model_config(**MODEL) and s.batch_size == 8 and s.max_epochs == 2
    assert s.lr == 0.5 and s.seed == 3 and s.checkpoint == "/x.ckpt" and s.max_pixels == 1000
    assert "kernel_size" not in s.collate  # deprecated in lightly; SimCLRTransform does not take it
    t = training.build_transform(s.collate)
    from PIL import Image

    v0, v1 = t(Image.new("RGB", (40, 30), (200, 10, 10)))
    assert v0.shape == v1.shape == (3, 32, 32)


# --------------------------------------------------------------------------- outputs and round trip


def test_disabled_training_writes_a_marker_without_torch(tmp_path, tiny):
    _, clean = tiny
    code = (
        "import sys, json; from kurate.phases.train import run_train; "
        f"run_train({clean!r}, {str(tmp_path / 'm')!r}, {{'enable_training': False}}); "
        "print(json.dumps(sorted(m for m in ('torch', 'pytorch_lightning', 'lightly') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    assert os.listdir(tmp_path / "m") == ["meta.json"]
    assert model_io.read(str(tmp_path / "m")) == ("", {"format": model_io.FORMAT, "trained": False})


def test_train_save_checkpoint_round_trip(tmp_path, tiny, capsys):
    """train -> model artifact + checkpoint_latest.ckpt -> checkpoint= gives identical embeddings."""
    files, clean = tiny
    latest = str(tmp_path / "run" / "checkpoint_latest.ckpt")
    cfg = train_config(checkpoint_dir=str(tmp_path / "run" / "checkpoints"), checkpoint_out=latest)
    meta = run_train(clean, str(tmp_path / "model"), cfg)
    assert meta["trained"] and meta["epochs"] == 2 and meta["epochs_this_run"] == 2
    assert meta["resumed_from_epoch"] == 0 and meta["device"] == "cpu" and np.isfinite(meta["final_loss"])
    assert meta["images_per_second"] > 0 and meta["started_from"] == "random initialisation (seed 3)"
    ckpts = sorted(os.listdir(tmp_path / "run" / "checkpoints"))  # last + lightly's top-1 by loss
    assert (
        len(ckpts) == 2
        and ckpts[0] == "last.ckpt"
        and ckpts[1] in ("lightly_epoch_0.ckpt", "lightly_epoch_1.ckpt")
    )
    assert not [p for p in (tmp_path / "run").rglob("*") if p.name.startswith(".tmp-")]
    err = capsys.readouterr().err
    assert "img/s=" in err and "loss=" in err  # the progress bar shows both

    # the artifact and the run-level file hold the same model, in lightly's checkpoint layout
    ckpt, ameta = model_io.read(str(tmp_path / "model"))
    assert ameta["trained"] and ameta["checkpoint"] == latest
    a, b = (torch.load(p, weights_only=True) for p in (ckpt, latest))
    assert a["kurate"]["model"] == embedding.model_config(**MODEL) and a["kurate"]["epochs"] == 2
    assert all(k.startswith(("model.backbone.", "model.projection_head.")) for k in a["state_dict"])
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k])

    # training changed the weights (vs the seeded initialisation training started from)
    init, _ = embedding.prepare_model(
        **{k: v for k, v in EMBED.items() if k != "input_size"}, pre_trained=False, seed=3
    )
    assert not torch.equal(init.state_dict()["backbone.1.weight"], a["state_dict"]["model.backbone.1.weight"])

    # the embed phase with the train phase's artifact == a later run with checkpoint=checkpoint_latest.ckpt
    emb_cfg = {
        "lightly": {
            "model": MODEL,
            "collate": {"input_size": 32},
            "loader": {"batch_size": 5, "num_workers": 0},
        }
    }
    run_embed(clean, str(tmp_path / "e1"), emb_cfg, model_in=str(tmp_path / "model"))
    run_embed(clean, str(tmp_path / "e2"), {**emb_cfg, "checkpoint": latest})
    from kurate.io import embeddings_io

    n1, x1, m1 = embeddings_io.read_embeddings(str(tmp_path / "e1"))
    n2, x2, m2 = embeddings_io.read_embeddings(str(tmp_path / "e2"))
    assert n1 == n2 == files.names
    np.testing.assert_array_equal(x1, x2)
    assert m1["source"] == f"trained in this run: {latest}" and m1["training"]["epochs"] == 2
    assert m1["training"]["failed"] == 0
    assert m2["source"] == f"lightly checkpoint {latest}"
    # and not the embeddings of the untrained model
    x0 = embedding.embed_files(
        files, **EMBED, batch_size=5, num_workers=0, pre_trained=False, seed=3, progress=False
    )
    assert not np.allclose(x0.embeddings, x1, atol=1e-3)


def test_corrupt_images_are_skipped_and_reported(tmp_path, tiny):
    files, _ = tiny
    root = tmp_path / "in"
    root.mkdir()
    for n in files.names[:10]:
        (root / n).write_bytes(open(os.path.join(files.root, n), "rb").read())
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    flist = FileList(str(root), sorted([*files.names[:10], "broken.png", "gone.png"]))
    cfg = train_config(lightly={"loader": {"batch_size": 4}, "trainer": {"max_epochs": 1}})
    result = training.train(
        flist, training.TrainSettings.from_config(cfg), str(tmp_path / "ck"), progress=False
    )
    assert [n for n, _ in result.failed] == ["broken.png", "gone.png"]
    assert "disappeared" in dict(result.failed)["gone.png"]
    assert result.epochs[0]["images"] > 0


def test_too_few_images_is_a_clear_error(tmp_path, tiny):
    files, _ = tiny
    with pytest.raises(KurateError, match="at least 2 images"):
        training.train(FileList(files.root, files.names[:1]), training.TrainSettings(), "", progress=False)


# --------------------------------------------------------------------------- lightly CLI compatibility


@pytest.mark.filterwarnings("ignore")
def test_lightly_cli_checkpoints_both_ways(tmp_path, tiny, monkeypatch):
    """A lightly-ssl-train checkpoint (made here by lightly's own CLI code, no download) is a valid
    starting point for training, and kurate's trained checkpoint embeds identically in lightly-embed."""
    import importlib

    from omegaconf import OmegaConf

    train_cli = importlib.import_module("lightly.cli.train_cli")
    embed_cli = importlib.import_module("lightly.cli.embed_cli")
    files, clean = tiny
    monkeypatch.chdir(tmp_path)
    cfg = OmegaConf.to_container(
        OmegaConf.load(os.path.join(os.path.dirname(train_cli.__file__), "config", "config.yaml"))
    )
    cfg.pop("hydra")
    cfg.update(input_dir=files.root, pre_trained=False, seed=5)
    cfg["model"].update(MODEL)
    cfg["collate"]["input_size"] = 32
    cfg["loader"].update(batch_size=8, num_workers=0)
    cfg["trainer"].update(max_epochs=1, enable_model_summary=False)
    cfg["checkpoint_callback"]["dirpath"] = str(tmp_path / "lightly_ckpt")
    theirs = train_cli._train_cli(cfg, is_cli_call=False)

    # (1) theirs -> ours: train on from lightly's checkpoint
    latest = str(tmp_path / "ours.ckpt")
    meta = run_train(
        clean,
        str(tmp_path / "m"),
        train_config(checkpoint=theirs, checkpoint_dir=str(tmp_path / "ck"), checkpoint_out=latest),
    )
    assert meta["started_from"] == f"lightly checkpoint {theirs}"

    # (2) ours -> theirs: lightly-embed reads kurate's checkpoint and embeds like kurate does
    cfg.update(checkpoint=latest)
    cfg["loader"].update(batch_size=5)
    their_emb, _, their_names = embed_cli._embed_cli(cfg, is_cli_call=False)
    ours = embedding.embed_files(
        files, **EMBED, batch_size=5, num_workers=0, checkpoint=latest, progress=False
    )
    by_name = dict(zip(ours.names, ours.embeddings, strict=True))
    np.testing.assert_allclose(np.stack([by_name[n] for n in their_names]), their_emb, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- resume


def _train_cmd(clean: str, out: str, cfg: dict) -> list[str]:
    return [
        sys.executable, "-m", "kurate.phases.train",
        "--clean-in", clean, "--model-out", out, "--config", json.dumps(cfg),
    ]  # fmt: skip


def test_killed_training_resumes_from_the_last_epoch(tmp_path, tiny, caplog):
    """kill -9 after an epoch checkpoint; the rerun resumes from it, trains only the remaining epochs and
    ends with exactly the weights of an uninterrupted run (batches and augmentations depend only on the seed,
    the epoch and the image)."""
    files, clean = tiny
    epochs = 8
    ck = tmp_path / "checkpoints"
    cfg = train_config(lightly={"trainer": {"max_epochs": epochs}}, checkpoint_dir=str(ck))
    proc = subprocess.Popen(
        _train_cmd(clean, str(tmp_path / "m1"), cfg),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (ck / "last.ckpt").exists():
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = torch.load(ck / "last.ckpt", weights_only=True)["epoch"] + 1  # complete: written atomically
    assert 1 <= done < epochs
    assert not (tmp_path / "m1" / "meta.json").exists()

    caplog.set_level(logging.INFO, logger="kurate.models.training")
    meta = run_train(clean, str(tmp_path / "m1"), cfg)  # the rerun (same task keys, same folder)
    assert f"resuming training from {ck / 'last.ckpt'}" in caplog.text
    ckpt, _ = model_io.read(str(tmp_path / "m1"))
    assert meta["resumed_from_epoch"] >= done and meta["epochs"] == epochs
    assert meta["epochs_this_run"] == epochs - meta["resumed_from_epoch"] < epochs
    # what the run started from is the first attempt's, as an uninterrupted run reports it (issue 14)
    assert meta["started_from"].startswith("random initialisation")
    assert not [p.name for p in ck.iterdir() if p.name.startswith(".tmp-")]  # a killed write's leftovers

    # the same training without interruption, in this process: identical weights
    straight = training.train(
        files, training.TrainSettings.from_config(cfg), str(tmp_path / "ck2"), progress=False
    )
    assert straight.start_epoch == 0 and len(straight.epochs) == epochs
    resumed = torch.load(ckpt, weights_only=True)["state_dict"]
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(resumed[f"model.{k}"], v, rtol=0, atol=0)


def test_checkpoint_from_other_settings_is_not_resumed(tmp_path, tiny, caplog):
    files, _ = tiny
    ck = str(tmp_path / "ck")
    s1 = training.TrainSettings.from_config(train_config(lightly={"trainer": {"max_epochs": 1}}))
    training.train(files, s1, ck, progress=False)
    # more epochs, same settings: resumes (a finished run continues to the new budget)
    s2 = training.TrainSettings.from_config(train_config(lightly={"trainer": {"max_epochs": 2}}))
    r2 = training.train(files, s2, ck, progress=False)
    assert r2.start_epoch == 1 and len(r2.epochs) == 1
    # another learning rate: starts afresh, and says why
    caplog.set_level(logging.WARNING, logger="kurate.models.training")
    s3 = training.TrainSettings.from_config(train_config(lightly={"optimizer": {"lr": 0.1}}))
    r3 = training.train(files, s3, ck, progress=False)
    assert r3.start_epoch == 0 and len(r3.epochs) == 2
    assert "other settings or input" in caplog.text
    # a truncated last.ckpt (not ours: ours are atomic) is ignored, not fatal
    with open(os.path.join(ck, "last.ckpt"), "r+b") as fh:
        fh.truncate(100)
    r4 = training.train(files, s3, ck, progress=False)
    assert r4.start_epoch == 0 and len(r4.epochs) == 2


def test_mirrored_checkpoint_folder_resumes_through_storage(tmp_path, tiny):
    """For bucket checkpoint folders Lightning writes locally and last.ckpt is copied through
    kurate.io.storage after each epoch; a later task (fresh scratch folder) resumes from the copy."""
    files, _ = tiny
    remote = str(tmp_path / "bucket" / "checkpoints")  # a local stand-in for the bucket URI
    s1 = training.TrainSettings.from_config(train_config(lightly={"trainer": {"max_epochs": 1}}))
    r1 = training.train(files, s1, remote, progress=False, mirror=True)
    assert os.listdir(remote) == ["last.ckpt"] and r1.start_epoch == 0
    s2 = training.TrainSettings.from_config(train_config(lightly={"trainer": {"max_epochs": 2}}))
    r2 = training.train(files, s2, remote, progress=False, mirror=True)
    assert r2.start_epoch == 1 and len(r2.epochs) == 1
    assert torch.load(os.path.join(remote, "last.ckpt"), weights_only=True)["epoch"] == 1


# --------------------------------------------------------------------------- video frames


def test_listed_video_frames_are_trained_on(tmp_path, tiny, monkeypatch):
    """Frames listed by ingest are decoded once (only the listed ones) and trained on like images;
    a video that cannot be opened is reported, not fatal; the scratch copies are removed afterwards."""
    from kurate.media import video
    from kurate.phases.ingest import run_ingest
    from tests.video_helpers import make_video

    files, _ = tiny
    root = tmp_path / "in"
    root.mkdir()
    for n in files.names[:6]:
        (root / n).write_bytes(open(os.path.join(files.root, n), "rb").read())
    make_video(root / "clips" / "a.mp4", n=12, size=(64, 48))
    (root / "clips" / "b.mp4").write_bytes(b"not a video at all")
    run_ingest(str(tmp_path / "files"), {"input_dir": str(root)})
    listed = filelist.read(str(tmp_path / "files"))
    assert sum(1 for v in listed.columns["video"] if v == "clips/a.mp4") == 12

    # the scratch copies hold exactly the decoded frames, read once per video
    want = {i: rgb for i, rgb, _ in video.iter_selected_rgb(str(root / "clips" / "a.mp4"), {0, 11})}
    opened: list[str] = []
    real_open = video.open_video

    def counting_open(uri):
        opened.append(uri)
        return real_open(uri)

    monkeypatch.setattr(video, "open_video", counting_open)
    with training._frames_on_disk(listed, 32, image.DEFAULT_MAX_PIXELS) as src:
        rows = [i for i, v in enumerate(listed.columns["video"]) if v == "clips/a.mp4"]
        scratch = os.path.dirname(src.uris[rows[0]])
        assert all(src.uris[r].startswith(scratch) for r in rows)
        b_row = listed.names.index("clips/b.mp4")
        assert list(src.unusable) == [b_row] and "cannot open video" in src.unusable[b_row]
        from PIL import Image

        for r in (rows[0], rows[-1]):
            frame = int(listed.columns["frame"][r])
            np.testing.assert_array_equal(np.asarray(Image.open(src.uris[r]).convert("RGB")), want[frame])
    assert opened.count(str(root / "clips" / "a.mp4")) == 1
    assert not os.path.exists(scratch)

    cfg = train_config(
        lightly={"loader": {"batch_size": 4, "drop_last": False}, "trainer": {"max_epochs": 1}}
    )
    result = training.train(listed, training.TrainSettings.from_config(cfg), "", progress=False)
    assert result.epochs[0]["images"] == len(listed.names) - 1  # 6 images + 12 frames; b.mp4 left out
    assert [n for n, _ in result.failed] == ["clips/b.mp4"]


def test_every_epoch_leaves_a_resumable_last_checkpoint(tmp_path, tiny):
    """last.ckpt follows every epoch, not only the epochs lightly's best-by-loss checkpoint keeps
    (save_top_k=0 keeps none): a rerun never redoes a finished epoch."""
    files, _ = tiny
    cfg = train_config(lightly={"trainer": {"max_epochs": 2}})
    cfg["lightly"]["checkpoint_callback"] = {"save_top_k": 0}
    training.train(files, training.TrainSettings.from_config(cfg), str(tmp_path / "ck"), progress=False)
    assert sorted(os.listdir(tmp_path / "ck")) == ["last.ckpt"]
    assert torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)["epoch"] == 1


def test_resume_with_loader_workers_equals_an_uninterrupted_run(tmp_path, tiny):
    """With background loader workers (which prefetch as soon as the epoch's loader starts), continuing a
    finished 2-epoch run to 3 epochs gives exactly the weights of 3 epochs in one go."""
    files, _ = tiny

    def settings(epochs: int) -> training.TrainSettings:
        cfg = train_config(lightly={"loader": {"num_workers": 2}, "trainer": {"max_epochs": epochs}})
        return training.TrainSettings.from_config(cfg)

    training.train(files, settings(2), str(tmp_path / "ck"), progress=False)
    resumed = training.train(files, settings(3), str(tmp_path / "ck"), progress=False)
    assert resumed.start_epoch == 2 and len(resumed.epochs) == 1
    straight = training.train(files, settings(3), str(tmp_path / "ck2"), progress=False)
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=0, atol=0)
