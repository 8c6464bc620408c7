import fractions
import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from kurate.errors import ConfigError, KurateError
from kurate.io.filelist import FileList
from kurate.models import embedding
from kurate.models.embedding import (
    build_model,
    embed_files,
    load_weights,
    prepare_model,
    save_checkpoint,
    zoo_url,
)

# Small settings keep the tests fast; the resnet-9 / d16 / w0.0625 combination is in lightly's zoo.
SMALL = {"model_name": "resnet-9", "width": 0.125, "num_ftrs": 16, "out_dim": 24}
ZOO_SMALL = {"name": "resnet-9", "width": 0.0625, "num_ftrs": 16, "out_dim": 128}


def _small_model(seed=0, **over):
    cfg = {"name": "resnet-9", "width": 0.125, "num_ftrs": 16, "out_dim": 24, **over}
    torch.manual_seed(seed)
    return build_model(**cfg).eval()


def _embed(model, x):
    with torch.inference_mode():
        return model.embed(x).numpy()


def _lightly_cli_model(name, width, num_ftrs, out_dim):
    """The model exactly as lightly 1.6's CLI builds it (lightly.cli._helpers.get_model_from_config)."""
    from lightly.cli._cli_simclr import _SimCLR
    from lightly.models import ResNetGenerator
    from lightly.models.batchnorm import get_norm_layer

    resnet = ResNetGenerator(name, width)
    last_conv_channels = list(resnet.children())[-1].in_features
    features = nn.Sequential(
        get_norm_layer(3, 0),
        *list(resnet.children())[:-1],
        nn.Conv2d(last_conv_channels, num_ftrs, 1),
        nn.AdaptiveAvgPool2d(1),
    )
    return _SimCLR(features, num_ftrs=num_ftrs, out_dim=out_dim)


def _lightly_layout(model):
    """A checkpoint laid out as lightly-ssl-train's PyTorch Lightning .ckpt (model is `self.model`)."""
    return {
        "epoch": 3,
        "global_step": 12,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": {f"model.{k}": v.clone() for k, v in model.state_dict().items()},
        "loops": {},
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
    }


def _save_image(path, rng, size, fmt):
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """A flat folder (lightly-embed reads flat folders) of 10 RGB PNG/JPEG images of various sizes
    and a byte-identical copy of one of them."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    names = []
    for i in range(10):
        fmt, ext = ("PNG", "png") if i % 2 else ("JPEG", "jpg")
        name = f"img_{i:02d}.{ext}"
        _save_image(str(root / name), rng, (20 + 3 * i, 48 - 2 * i), fmt)
        names.append(name)
    (root / "copy_of_01.png").write_bytes((root / names[1]).read_bytes())
    names.append("copy_of_01.png")
    return str(root), names


@pytest.fixture()
def files_with_corrupt(image_dir, tmp_path):
    """The images above (one moved to a subfolder) plus a corrupt and a vanished file, scrambled."""
    src, names = image_dir
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    for n in names:
        (root / n).write_bytes(open(os.path.join(src, n), "rb").read())
    os.rename(root / names[4], root / "sub" / names[4])
    names = [*names[:4], f"sub/{names[4]}", *names[5:]]
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    order = [names[7], "broken.jpg", names[0], names[4], "gone.png", *names[1:4], *names[5:7], *names[8:]]
    return FileList(root=str(root), names=order)


# --------------------------------------------------------------------------- model


@pytest.mark.parametrize(
    "cfg",
    [
        {"name": "resnet-18", "width": 1.0, "num_ftrs": 32, "out_dim": 128},  # lightly-embed's defaults
        {"name": "resnet-9", "width": 0.125, "num_ftrs": 16, "out_dim": 24},
        {"name": "resnet-50", "width": 0.125, "num_ftrs": 8, "out_dim": 16},
    ],
)
def test_build_model_matches_lightly_cli(cfg):
    ours = build_model(**cfg)
    theirs = _lightly_cli_model(**cfg)
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    assert {k: tuple(v.shape) for k, v in ours_sd.items()} == {
        k: tuple(v.shape) for k, v in theirs_sd.items()
    }
    assert "backbone.0.running_mean" in ours_sd and "projection_head.layers.2.weight" in ours_sd

    theirs.load_state_dict(ours_sd)
    ours.eval(), theirs.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        emb = ours.embed(x)
        assert emb.shape == (2, cfg["num_ftrs"])
        torch.testing.assert_close(emb, theirs.backbone(x).flatten(1))
        assert ours(x).shape == (2, cfg["out_dim"])
        torch.testing.assert_close(ours(x), theirs(x))
    assert ours.config == cfg


def test_build_model_rejects_unknown_name():
    with pytest.raises(ConfigError, match="model.name.*resnet-18"):
        build_model("resnet-7")


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.filterwarnings("ignore")  # lightly / Lightning chatter (small batch, logger, deprecations)
def test_real_lightly_ssl_train_checkpoint_and_lightly_embed_parity(image_dir, tmp_path, monkeypatch):
    """Train 1 epoch with lightly's own CLI code, load its .ckpt, and match lightly-embed's output."""
    import importlib

    from omegaconf import OmegaConf

    train_cli = importlib.import_module("lightly.cli.train_cli")
    embed_cli = importlib.import_module("lightly.cli.embed_cli")
    src, names = image_dir
    monkeypatch.chdir(tmp_path)  # lightning_logs/ goes here
    cfg = OmegaConf.to_container(
        OmegaConf.load(os.path.join(os.path.dirname(train_cli.__file__), "config", "config.yaml"))
    )
    cfg.pop("hydra")
    cfg.update(input_dir=src, pre_trained=False, seed=5)
    cfg["model"].update(name="resnet-9", width=0.125, num_ftrs=16, out_dim=24)
    cfg["collate"]["input_size"] = 32
    cfg["loader"].update(batch_size=4, num_workers=0)
    cfg["trainer"].update(max_epochs=1, enable_model_summary=False)
    cfg["checkpoint_callback"]["dirpath"] = str(tmp_path / "ckpt")
    ckpt = train_cli._train_cli(cfg, is_cli_call=False)
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert any(k.startswith("model.backbone.0.") for k in raw["state_dict"])

    model, source = prepare_model("resnet-9", 0.125, 16, 24, checkpoint=ckpt)
    assert source == f"lightly checkpoint {ckpt}"
    for k, v in raw["state_dict"].items():
        torch.testing.assert_close(model.state_dict()[k.removeprefix("model.")], v, rtol=0, atol=0)

    # lightly-embed on the same folder with the same checkpoint, vs. our embed_files
    cfg.update(checkpoint=ckpt)
    cfg["loader"].update(batch_size=3)
    their_emb, _, their_names = embed_cli._embed_cli(cfg, is_cli_call=False)
    ours = embed_files(
        FileList(root=src, names=names), **SMALL, input_size=32, batch_size=3, num_workers=0, checkpoint=ckpt
    )
    assert sorted(their_names) == sorted(ours.names) == sorted(names)
    by_name = dict(zip(ours.names, ours.embeddings, strict=True))
    mine = np.stack([by_name[n] for n in their_names])
    np.testing.assert_allclose(mine, their_emb, rtol=1e-4, atol=1e-5)
    assert np.abs(mine).max() > 1e-3  # not trivially all zero


def test_lightly_layout_checkpoint_loads_both_ways(tmp_path):
    src = _small_model(seed=1)
    path = str(tmp_path / "lightly.ckpt")
    torch.save(_lightly_layout(src), path)

    model = _small_model(seed=2)
    x = torch.randn(3, 3, 32, 32)
    assert not np.allclose(_embed(model, x), _embed(src, x))
    assert load_weights(model, path) == f"lightly checkpoint {path}"
    model.eval()
    np.testing.assert_array_equal(_embed(model, x), _embed(src, x))

    # lightly's own CLI loader reads the same file into its own model: same embeddings
    from lightly.cli._helpers import load_from_state_dict

    theirs = _lightly_cli_model("resnet-9", 0.125, 16, 24)
    load_from_state_dict(theirs, torch.load(path, weights_only=True)["state_dict"])
    theirs.eval()
    with torch.inference_mode():
        np.testing.assert_array_equal(theirs.backbone(x).flatten(1).numpy(), _embed(src, x))


def test_pre_1_0_6_lightly_layout_loads(tmp_path):
    """Old lightly checkpoints: `features` instead of `backbone`, projection head without `layers`."""
    src = _small_model(seed=3)
    old = {}
    for k, v in src.state_dict().items():
        k = k.replace("backbone.", "features.", 1).replace("projection_head.layers.", "projection_head.", 1)
        old[f"model.{k}"] = v
    path = str(tmp_path / "old.pth")
    torch.save({"state_dict": old}, path)
    model = _small_model(seed=4)
    load_weights(model, path)
    x = torch.randn(2, 3, 32, 32)
    np.testing.assert_array_equal(_embed(model.eval(), x), _embed(src, x))


def test_unprefixed_state_dict_wrapper_and_foreign_lightning_keys_load(tmp_path):
    src = _small_model(seed=9)
    x = torch.randn(2, 3, 32, 32)
    path = str(tmp_path / "a.pt")
    torch.save({"state_dict": src.state_dict()}, path)
    model = _small_model(seed=10)
    load_weights(model, path)
    np.testing.assert_array_equal(_embed(model.eval(), x), _embed(src, x))

    # a Lightning module with more state than `model` (e.g. a loss with buffers): only model.* is used
    ckpt = _lightly_layout(src)
    ckpt["state_dict"]["criterion.bank"] = torch.zeros(3)
    torch.save(ckpt, path)
    model = _small_model(seed=10)
    load_weights(model, path)
    np.testing.assert_array_equal(_embed(model.eval(), x), _embed(src, x))


def test_kurate_checkpoint_round_trip(tmp_path):
    src = _small_model(seed=5)
    path = str(tmp_path / "sub" / "model.pt")
    save_checkpoint(path, src, src.config)
    assert os.listdir(tmp_path / "sub") == ["model.pt"]
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "kurate.checkpoint/1" and raw["model"] == src.config

    model, source = prepare_model("resnet-9", 0.125, 16, 24, checkpoint=path, seed=99)
    assert source == f"kurate checkpoint {path}"
    x = torch.randn(4, 3, 32, 32)
    np.testing.assert_array_equal(_embed(model, x), _embed(src, x))
    assert not model.training

    with pytest.raises(
        KurateError, match=r"saved for model.name=resnet-9.*model.num_ftrs=16.*model.num_ftrs=8"
    ):
        prepare_model("resnet-9", 0.125, 8, 24, checkpoint=path)


def test_plain_state_dicts_load(tmp_path):
    src = _small_model(seed=6)
    x = torch.randn(2, 3, 32, 32)
    bpath, mpath = str(tmp_path / "backbone.pt"), str(tmp_path / "model.pt")
    torch.save(src.backbone.state_dict(), bpath)
    torch.save(src.state_dict(), mpath)
    for path, kind in ((bpath, "backbone state dict"), (mpath, "model state dict")):
        model = _small_model(seed=7)
        assert load_weights(model, path) == f"{kind} {path}"
        np.testing.assert_array_equal(_embed(model.eval(), x), _embed(src, x))


def test_mismatched_checkpoint_is_a_clear_error(tmp_path):
    src = _small_model(seed=8, num_ftrs=32)
    path = str(tmp_path / "lightly.ckpt")
    torch.save(_lightly_layout(src), path)
    with pytest.raises(KurateError) as err:
        prepare_model("resnet-9", 0.125, 16, 24, checkpoint=path)
    msg = str(err.value)
    assert "model.name=resnet-9, model.width=0.125, model.num_ftrs=16, model.out_dim=24" in msg
    assert "backbone.7.weight: checkpoint (32, 64, 1, 1) vs model (16, 64, 1, 1)" in msg
    assert "looks like model.name=resnet-9, model.width=0.125, model.num_ftrs=32, model.out_dim=24" in msg

    with pytest.raises(KurateError, match=r"missing key.*looks like model.name=resnet-9"):
        prepare_model("resnet-18", 0.125, 16, 24, checkpoint=path)

    with pytest.raises(KurateError, match="does not exist"):
        prepare_model(**{"model_name": "resnet-9"}, checkpoint=str(tmp_path / "nope.ckpt"))

    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(KurateError, match="cannot be loaded"):
        prepare_model("resnet-9", checkpoint=str(junk))


def test_checkpoint_needing_arbitrary_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "extra": fractions.Fraction(1, 3)}, str(path))
    with pytest.raises(KurateError, match="weights_only"):
        prepare_model("resnet-9", checkpoint=str(path))


# --------------------------------------------------------------------------- weights source


def test_random_init_warns_loudly_and_is_deterministic(caplog, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    caplog.set_level(logging.WARNING, logger="kurate.models.embedding")
    x = torch.randn(2, 3, 32, 32)
    rng_state = torch.get_rng_state()
    m1, s1 = prepare_model("resnet-9", 0.125, 16, 24, pre_trained=False, seed=3)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global RNG is left alone
    m2, _ = prepare_model("resnet-9", 0.125, 16, 24, pre_trained=False, seed=3)
    m3, _ = prepare_model("resnet-9", 0.125, 16, 24, pre_trained=False, seed=4)
    assert s1 == "random initialisation (seed 3)"
    np.testing.assert_array_equal(_embed(m1, x), _embed(m2, x))
    assert not np.allclose(_embed(m1, x), _embed(m3, x))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    text = warnings[0].getMessage()
    assert "NOT MEANINGFUL" in text and "pre_trained is false" in text and "checkpoint" in text
    assert text.count("\n") >= 5  # a banner, not a one-liner

    # pre_trained, but the zoo file is not on disk: random too, and says where it looked
    caplog.clear()
    _, source = prepare_model("resnet-9", 0.0625, 16, 128, pre_trained=True, seed=3)
    assert source.startswith("random initialisation")
    (rec,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "not found locally" in rec.getMessage() and "empty_torch_home" in rec.getMessage()
    assert not (tmp_path / "empty_torch_home").exists()  # nothing was downloaded

    # no zoo weights exist for these settings at all
    caplog.clear()
    _, source = prepare_model("resnet-9", 0.125, 8, 24, pre_trained=True)
    assert source.startswith("random initialisation")
    assert "publishes no pretrained weights for resnet-9/simclr/d8/w0.125" in caplog.records[-1].getMessage()


def test_pretrained_zoo_file_in_torch_home_is_used(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    url = zoo_url(ZOO_SMALL)
    assert url.startswith("https://") and "resnet9" in url
    ckdir = tmp_path / "torch_home" / "hub" / "checkpoints"
    ckdir.mkdir(parents=True)
    torch.manual_seed(11)
    src = build_model(**ZOO_SMALL).eval()
    zoo_file = ckdir / url.rsplit("/", 1)[-1]
    torch.save({"state_dict": {f"model.{k}": v for k, v in src.state_dict().items()}}, str(zoo_file))
    before = sorted(os.listdir(ckdir))

    caplog.set_level(logging.INFO, logger="kurate.models.embedding")
    model, source = prepare_model("resnet-9", 0.0625, 16, 128, pre_trained=True)
    assert source == f"lightly model zoo resnet-9/simclr/d16/w0.0625 ({zoo_file})"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    x = torch.randn(2, 3, 32, 32)
    np.testing.assert_array_equal(_embed(model, x), _embed(src, x))
    assert sorted(os.listdir(ckdir)) == before

    # an explicit checkpoint wins over the zoo file
    other = _small_model(seed=12, width=0.0625, out_dim=128)
    path = str(tmp_path / "mine.pt")
    save_checkpoint(path, other)
    _, source = prepare_model("resnet-9", 0.0625, 16, 128, pre_trained=True, checkpoint=path)
    assert source == f"kurate checkpoint {path}"


def test_pretrained_zoo_file_in_kurate_weights_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv(embedding.WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    (tmp_path / "weights").mkdir()
    src = _small_model(seed=13, width=0.0625, out_dim=128)
    zoo_file = tmp_path / "weights" / zoo_url(ZOO_SMALL).rsplit("/", 1)[-1]
    torch.save({"state_dict": {f"model.{k}": v for k, v in src.state_dict().items()}}, str(zoo_file))
    model, source = prepare_model("resnet-9", 0.0625, 16, 128)
    assert str(zoo_file) in source
    x = torch.randn(2, 3, 32, 32)
    np.testing.assert_array_equal(_embed(model, x), _embed(src, x))


# --------------------------------------------------------------------------- embed_files


def test_embed_files_order_failures_and_workers(files_with_corrupt, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    files = files_with_corrupt
    common = {**SMALL, "input_size": 32, "pre_trained": False, "seed": 1, "progress": False}
    r0 = embed_files(files, batch_size=4, num_workers=0, **common)
    expected = [n for n in files.names if n not in ("broken.jpg", "gone.png")]
    assert r0.names == expected
    assert r0.embeddings.shape == (len(expected), 16) and r0.embeddings.dtype == np.float32
    assert [f[0] for f in r0.failed] == ["broken.jpg", "gone.png"]
    assert "image" in r0.failed[0][1] and "disappeared" in r0.failed[1][1]
    assert r0.device == "cpu" and r0.weights_source == "random initialisation (seed 1)"
    assert r0.images_per_second > 0 and 0 < r0.compute_efficiency <= 1

    r2 = embed_files(files, batch_size=4, num_workers=2, **common)
    assert r2.names == r0.names and r2.failed == r0.failed
    np.testing.assert_array_equal(r2.embeddings, r0.embeddings)

    # batch sizes that don't divide N (13 files) and batch size 1: same rows, same values
    for bs in (1, 5, 64):
        rb = embed_files(files, batch_size=bs, num_workers=0, **common)
        assert rb.names == r0.names and rb.failed == r0.failed
        np.testing.assert_allclose(rb.embeddings, r0.embeddings, rtol=1e-5, atol=1e-6)

    # different images, different embeddings; the byte-identical copy (in another batch) embeds the same
    by_name = dict(zip(r0.names, r0.embeddings, strict=True))
    np.testing.assert_allclose(by_name["copy_of_01.png"], by_name["img_01.png"], rtol=1e-5, atol=1e-6)
    distinct = np.stack([v for k, v in by_name.items() if k != "copy_of_01.png"])
    d = np.linalg.norm(distinct[:, None] - distinct[None], axis=-1)
    assert (d + np.eye(len(distinct)) > 1e-3).all()

    # each image's embedding is independent of its neighbours: embedding one alone gives the same row
    alone = embed_files(FileList(files.root, ["img_03.png"]), batch_size=4, num_workers=0, **common)
    np.testing.assert_allclose(alone.embeddings[0], by_name["img_03.png"], rtol=1e-5, atol=1e-6)


def test_embed_files_uses_checkpoint_and_progress_bar(files_with_corrupt, tmp_path, capsys):
    src = _small_model(seed=21)
    path = str(tmp_path / "m.pt")
    save_checkpoint(path, src)
    files = FileList(files_with_corrupt.root, ["img_00.jpg", "img_05.png"])
    res = embed_files(files, **SMALL, input_size=32, batch_size=2, num_workers=0, checkpoint=path)
    assert res.weights_source == f"kurate checkpoint {path}"

    from kurate.media import image

    t = embedding.build_transform(32)
    x = torch.stack([t(image.load_image(os.path.join(files.root, n))) for n in files.names])
    np.testing.assert_allclose(res.embeddings, _embed(src, x), rtol=1e-5, atol=1e-6)
    err = capsys.readouterr().err
    assert "img/s" in err and "compute_eff" in err and "2/2" in err


def test_embed_files_edge_cases(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    (tmp_path / "bad.png").write_bytes(b"")
    common = {**SMALL, "input_size": 32, "batch_size": 2, "num_workers": 0, "pre_trained": False}
    res = embed_files(FileList(str(tmp_path), ["bad.png"]), progress=False, **common)
    assert (
        res.names == []
        and res.embeddings.shape == (0, 16)
        and res.failed == [("bad.png", "empty file (0 bytes)")]
    )
    res = embed_files(FileList(str(tmp_path), []), progress=False, **common)
    assert res.names == [] and res.embeddings.shape == (0, 16) and res.failed == []
    with pytest.raises(ConfigError, match="batch_size"):
        embed_files(FileList(str(tmp_path), []), **{**common, "batch_size": 0})


def test_resolve_helpers():
    assert embedding.resolve_num_workers(0) == 0 and embedding.resolve_num_workers(3) == 3
    assert embedding.resolve_num_workers(-1) >= 1
    assert embedding.resolve_device("cpu") == torch.device("cpu")
    assert embedding.resolve_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
