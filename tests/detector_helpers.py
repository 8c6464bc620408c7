"""Generated shapes and a tiny detector trained on them in seconds (CPU), for the pretagging tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
CATEGORIES = ["__background__", "circle", "square"]  # label id = index; FCOS never predicts 0


@dataclass
class Shape:
    category_id: int
    box: list[int]  # x, y, w, h

    def xyxy(self) -> list[int]:
        x, y, w, h = self.box
        return [x, y, x + w, y + h]


def draw_shapes(rng: np.random.Generator, kinds: list[int] | None = None) -> tuple[Image.Image, list[Shape]]:
    """A dark image with 1-3 non-overlapping bright shapes (red circle: class 1, blue square: class 2)."""
    img = Image.new("RGB", (SIZE, SIZE), tuple(int(v) for v in rng.integers(0, 70, 3)))
    d = ImageDraw.Draw(img)
    if kinds is None:
        kinds = [int(k) for k in rng.integers(1, 3, size=int(rng.integers(1, 4)))]
    shapes: list[Shape] = []
    for kind in kinds:
        for _ in range(50):
            s = int(rng.integers(13, 23))
            x, y = (int(v) for v in rng.integers(0, SIZE - s, 2))
            cand = Shape(kind, [x, y, s, s])
            a = cand.xyxy()
            if all(
                a[0] >= o[2] + 2 or a[2] + 2 <= o[0] or a[1] >= o[3] + 2 or a[3] + 2 <= o[1]
                for o in (sh.xyxy() for sh in shapes)
            ):
                break
        else:
            continue
        lo, hi = ((200, 40, 40), (256, 90, 90)) if kind == 1 else ((40, 120, 200), (90, 200, 256))
        colour = tuple(int(v) for v in rng.integers(lo, hi))  # reddish circles, bluish squares
        box = [a[0], a[1], a[2] - 1, a[3] - 1]
        (d.ellipse if kind == 1 else d.rectangle)(box, fill=colour)
        shapes.append(cand)
    return img, shapes


def make_shapes_folder(root: Path, layouts: list[list[int]], seed: int = 7) -> dict[str, list[Shape]]:
    """One PNG per layout (a list of class ids); returns ``{name: shapes}``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    truth: dict[str, list[Shape]] = {}
    for i, kinds in enumerate(layouts):
        img, shapes = draw_shapes(rng, kinds)
        name = f"shapes_{i:03d}.png"
        img.save(root / name)
        truth[name] = shapes
    return truth


def train_tiny_detector(n_images: int = 200, epochs: int = 12, seed: int = 0):
    """``fcos_tiny`` trained on ``n_images`` generated images (Adam, batch 16): a few seconds on a CPU."""
    import torch

    from kurate.models.detection import fcos_tiny

    rng = np.random.default_rng(seed)
    data = [draw_shapes(rng) for _ in range(n_images)]
    images = [torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255 for img, _ in data]
    targets = [
        {
            "boxes": torch.tensor([s.xyxy() for s in shapes], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([s.category_id for s in shapes], dtype=torch.int64),
        }
        for _, shapes in data
    ]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = fcos_tiny(len(CATEGORIES))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(epochs):
            order = rng.permutation(n_images)
            for i in range(0, n_images, 16):
                idx = order[i : i + 16]
                losses = model([images[j] for j in idx], [targets[j] for j in idx])
                loss = sum(losses.values())
                opt.zero_grad()
                loss.backward()
                opt.step()
    model.eval()
    return model


def box_iou(a: list[float], b: list[float]) -> float:
    """IoU of two [x, y, w, h] boxes."""
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def match(truth: list[Shape], preds: list[dict], iou: float = 0.5) -> tuple[int, int, int]:
    """(true positives, missed, false positives): greedy same-class matching at ``iou``."""
    used: set[int] = set()
    tp = 0
    for s in truth:
        best, best_j = 0.0, -1
        for j, p in enumerate(preds):
            if j in used or p["category_id"] != s.category_id:
                continue
            v = box_iou([float(v) for v in s.box], p["bbox"])
            if v > best:
                best, best_j = v, j
        if best >= iou:
            used.add(best_j)
            tp += 1
    return tp, len(truth) - tp, len(preds) - len(used)
