"""kurate's copy of lightly's CLI model and embed transform: identical to lightly's, minus its import cost."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from kurate.models import embedding, resnet


def _lightly_model(name: str, width: float, num_ftrs: int, out_dim: int) -> torch.nn.Module:
    """lightly 1.6's CLI model, built from lightly's own classes (as lightly.cli._helpers does)."""
    from lightly.models import ResNetGenerator
    from lightly.models.modules import SimCLRProjectionHead

    children = list(ResNetGenerator(name, width).children())
    backbone = torch.nn.Sequential(
        torch.nn.BatchNorm2d(3),
        *children[:-1],
        torch.nn.Conv2d(children[-1].in_features, num_ftrs, 1),
        torch.nn.AdaptiveAvgPool2d(1),
    )
    return embedding.LightlyCLIModel(
        backbone, SimCLRProjectionHead(num_ftrs, num_ftrs, out_dim, batch_norm=False), {}
    )


@pytest.mark.parametrize(
    ("name", "width"),
    [("resnet-9", 0.125), ("resnet-18", 0.25), ("resnet-34", 0.0625), ("resnet-50", 0.0625),
     ("resnet-101", 0.0625), ("resnet-152", 0.0625)],
)  # fmt: skip
def test_same_modules_same_seeded_weights_as_lightly(name, width):
    torch.manual_seed(7)
    theirs = _lightly_model(name, width, 16, 24).eval()
    torch.manual_seed(7)
    ours = embedding.build_model(name, width, 16, 24).eval()
    a, b = theirs.state_dict(), ours.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(theirs.embed(x), ours.embed(x))
        assert torch.equal(theirs(x), ours(x))
    assert resnet.LAYERS.keys() == set(embedding.MODEL_NAMES)


def test_transform_is_bit_identical_to_lightly_embeds():
    from torchvision.transforms import v2 as T

    reference = T.Compose(
        [
            T.Resize((64, 64)),
            T.ToImage(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean=list(embedding.IMAGENET_MEAN), std=list(embedding.IMAGENET_STD)),
        ]
    )
    rng = np.random.default_rng(0)
    for shape in ((300, 411, 3), (64, 64, 3), (37, 1000, 3)):
        img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        assert torch.equal(embedding.build_transform(64)(img), reference(img))


def test_embedding_imports_neither_lightly_nor_torchvision(tmp_path):
    code = (
        "import sys\n"
        "from kurate.models import embedding\n"
        "from PIL import Image\n"
        "m, _ = embedding.prepare_model('resnet-9', 0.125, 8, 8, pre_trained=False)\n"
        "embedding.build_transform(32)(Image.new('RGB', (40, 30)))\n"
        "print(sorted(k for k in ('lightly', 'torchvision') if k in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
