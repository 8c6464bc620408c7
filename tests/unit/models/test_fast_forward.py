"""The fast CPU forward (ONNX Runtime) embeds like the torch reference path, for every model shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kurate.io.filelist import FileList
from kurate.models import embedding, onnx_backbone
from tests.helpers import make_image_folder

pytest.importorskip("onnxruntime")


def _model(name: str, width: float, seed: int = 0) -> embedding.LightlyCLIModel:
    torch.manual_seed(seed)
    model = embedding.build_model(name, width, 16, 24).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # non-trivial running statistics, as a trained model has
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.2)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                mod.weight.copy_(torch.randn(mod.num_features, generator=g) * 0.3 + 1)
                mod.bias.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
    return model


@pytest.mark.parametrize(
    ("name", "width"),
    [("resnet-9", 0.125), ("resnet-18", 0.25), ("resnet-34", 0.0625), ("resnet-50", 0.0625)],
)
def test_onnx_backbone_matches_torch(name, width):
    model = _model(name, width)
    x = torch.randn(5, 3, 40, 40)
    with torch.inference_mode():
        ref = model.embed(x).numpy()
    fast = onnx_backbone.OnnxBackbone(model.backbone, threads=1)(x.numpy())
    assert fast.shape == ref.shape == (5, 16)
    assert np.abs(fast - ref).max() <= 1e-5 * max(1.0, float(np.abs(ref).max()))
    assert np.abs(ref).max() > 1e-3  # not trivially zero


def test_unknown_modules_are_refused_so_torch_runs_them():
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.AdaptiveAvgPool2d(1))
    with pytest.raises(onnx_backbone.Unsupported, match="GELU"):
        onnx_backbone.build_onnx(backbone)


def test_embed_files_same_embeddings_on_both_backends(tmp_path, monkeypatch):
    folder = make_image_folder(tmp_path / "img", n=7, n_dup=0, corrupt=False)
    files = FileList(root=str(folder.root), names=folder.images)
    ckpt = str(tmp_path / "m.ckpt")
    model = _model("resnet-18", 0.125, seed=4)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    kw = {"model_name": "resnet-18", "width": 0.125, "num_ftrs": 16, "out_dim": 24, "input_size": 32}
    results = {}
    for backend in ("torch", "onnxruntime"):
        monkeypatch.setenv(embedding.BACKEND_ENV, backend)
        results[backend] = embedding.embed_files(
            files, **kw, batch_size=3, num_workers=0, checkpoint=ckpt, progress=False
        )
        assert results[backend].backend == backend
    a, b = results["torch"], results["onnxruntime"]
    assert a.names == b.names == folder.images
    assert np.abs(a.embeddings - b.embeddings).max() <= 1e-4
    monkeypatch.setenv(embedding.BACKEND_ENV, "auto")
    auto = embedding.embed_files(files, **kw, batch_size=3, num_workers=0, checkpoint=ckpt, progress=False)
    assert auto.backend == "onnxruntime"  # the fast path is the default on a CPU where it is installed


def test_fast_embed_decode_is_close_to_the_exact_decode_but_opt_in(tmp_path):
    """kurate.fast_embed_decode: JPEGs decoded DCT-scaled; embeddings deviate a little, never silently."""
    from kurate.pool import embed_cache
    from tests import jpeg_corpus as jc

    jc.write_all(tmp_path, jc.photo_jpegs([(640, 480)] * 4, seed=3))
    files = FileList(root=str(tmp_path), names=sorted(p.name for p in tmp_path.iterdir()))
    kw = {"model_name": "resnet-9", "width": 0.125, "num_ftrs": 16, "out_dim": 24, "input_size": 32}
    exact = embedding.embed_files(files, **kw, num_workers=0, pre_trained=False, progress=False)
    fast = embedding.embed_files(
        files, **kw, num_workers=0, pre_trained=False, progress=False, fast_decode=True
    )
    diff = np.linalg.norm(fast.embeddings - exact.embeddings, axis=1)
    assert diff.max() > 0  # other pixels...
    assert (diff / np.linalg.norm(exact.embeddings, axis=1)).max() < 0.05  # ...the same picture
    cfg = embedding.model_config("resnet-9", 0.125, 16, 24)
    assert embed_cache.cache_key(cfg, "w", 32, True) != embed_cache.cache_key(cfg, "w", 32)  # no mixing


def test_a_failing_onnx_runtime_falls_back_to_torch_unless_asked_for(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("InvalidGraph")

    monkeypatch.setattr(onnx_backbone, "OnnxBackbone", broken)
    model = _model("resnet-9", 0.125)
    monkeypatch.setenv(embedding.BACKEND_ENV, "auto")
    _, backend = embedding._forward(model, torch.device("cpu"))
    assert backend == "torch"
    monkeypatch.setenv(embedding.BACKEND_ENV, "onnxruntime")
    with pytest.raises(RuntimeError, match="InvalidGraph"):
        embedding._forward(model, torch.device("cpu"))
    monkeypatch.setenv(embedding.BACKEND_ENV, "tensorrt")
    with pytest.raises(Exception, match="KURATE_EMBED_BACKEND"):
        embedding._forward(model, torch.device("cpu"))


def test_onnx_runtime_telemetry_stays_off(tmp_path):
    """ONNX Runtime's Linux telemetry (uploads, a device id under ~/.cache) is opted out of before import."""
    import subprocess
    import sys

    code = (
        "import numpy as np, torch\n"
        "from kurate.models import embedding, onnx_backbone\n"
        "m = embedding.build_model('resnet-9', 0.125, 8, 8).eval()\n"
        "print(onnx_backbone.OnnxBackbone(m.backbone, 1)(np.zeros((1, 3, 16, 16), np.float32)).shape)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("ORT_")}
    env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / ".cache"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 8)"
    assert not list(tmp_path.rglob("deviceid")), "onnxruntime wrote a telemetry device id"
