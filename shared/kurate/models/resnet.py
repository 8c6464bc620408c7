"""Lightly's CLI ResNet and SimCLR projection head, defined here so embedding never imports lightly.

``import lightly.models`` pulls in torchvision, whose import alone costs 1.5 s per process (it loads
``torch._dynamo``): a fixed cost of every embed task. These are the same modules as lightly 1.6's
``lightly.models.resnet`` (``BasicBlock``, ``Bottleneck``, ``ResNetGenerator``) and
``lightly.models.modules.SimCLRProjectionHead(batch_norm=False)``: same layers, built in the same order
(so a seeded random initialisation gives the same weights) and the same state-dict keys. A test pins
both against lightly's own classes for every model name.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

#: lightly's ``ResNetGenerator`` table: name -> (block, blocks per stage).
LAYERS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet-9": ("basic", (1, 1, 1, 1)),
    "resnet-18": ("basic", (2, 2, 2, 2)),
    "resnet-34": ("basic", (3, 4, 6, 3)),
    "resnet-50": ("bottleneck", (3, 4, 6, 3)),
    "resnet-101": ("bottleneck", (3, 4, 23, 3)),
    "resnet-152": ("bottleneck", (3, 8, 36, 3)),
}


def _shortcut(in_planes: int, out: int, stride: int) -> nn.Sequential:
    if stride != 1 or in_planes != out:
        return nn.Sequential(
            nn.Conv2d(in_planes, out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out)
        )
    return nn.Sequential()


class BasicBlock(nn.Module):
    """lightly's ``BasicBlock``: two 3x3 convolutions with batch norm, identity or 1x1 shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        """As lightly: conv-bn-relu, conv-bn, plus the shortcut, relu."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class Bottleneck(nn.Module):
    """lightly's ``Bottleneck``: 1x1, 3x3, 1x1 convolutions with batch norm, expansion 4."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, self.expansion * planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(self.expansion * planes)
        self.shortcut = _shortcut(in_planes, self.expansion * planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        """As lightly: three conv-bn(-relu) layers, plus the shortcut, relu."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += self.shortcut(x)
        return F.relu(out)


def resnet_children(name: str, width: float, num_classes: int = 10) -> list[nn.Module]:
    """The children of lightly's ``ResNetGenerator(name, width)``, in order (conv1, bn1, layer1-4, linear).

    The final linear layer is built (and returned) as lightly builds it, so the random number stream
    of a seeded initialisation is consumed exactly as there.
    """
    kind, counts = LAYERS[name]
    block: type[BasicBlock] | type[Bottleneck] = BasicBlock if kind == "basic" else Bottleneck
    base = int(64 * width)
    conv1 = nn.Conv2d(3, base, kernel_size=3, stride=1, padding=1, bias=False)
    bn1 = nn.BatchNorm2d(base)
    in_planes = base
    stages: list[nn.Module] = []
    for i, n_blocks in enumerate(counts):
        planes = base * 2**i
        blocks = []
        for stride in [1 if i == 0 else 2] + [1] * (n_blocks - 1):
            blocks.append(block(in_planes, planes, stride))
            in_planes = planes * block.expansion
        stages.append(nn.Sequential(*blocks))
    linear = nn.Linear(base * 8 * block.expansion, num_classes)
    return [conv1, bn1, *stages, linear]


class ProjectionHead(nn.Module):
    """lightly's ``SimCLRProjectionHead(input, hidden, output, batch_norm=False)`` (2 layers)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_dim, hidden_dim, bias=True),
            nn.ReLU(),
            nn.Linear(hidden_dim, output_dim, bias=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        """The projection (what the self-supervised loss sees)."""
        return self.layers(x)
