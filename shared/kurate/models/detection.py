"""Object detection for pretagging: torchvision detectors built offline, weights from a checkpoint.

Every model is constructed with ``weights=None, weights_backbone=None`` (nothing is downloaded, ever)
and gets its weights from the checkpoint the pretagging settings name. Accepted checkpoints (read
with ``torch.load(weights_only=True)``):

(a) kurate's own, written by :func:`save_detector`: ``{"format": "kurate.detector/1", "architecture",
    "num_classes", "categories", "options", "state_dict"}``;
(b) a torchvision reference-scripts checkpoint ``{"model": state_dict, ...}`` (tensors only), a Lightning
    ``{"state_dict": {"model.<key>": ...}}`` or a plain ``state_dict`` of the detector.

``fcos_tiny`` is a small FCOS (a 4-layer convolutional backbone, one feature level) for simple data: it
trains in seconds on a CPU, which is what the tests do. Importing this module imports torch.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import nn

from kurate.errors import ConfigError, KurateError
from kurate.io import filelist, storage
from kurate.io import predictions as preds_io
from kurate.media import image, samples
from kurate.models import coco

log = logging.getLogger("kurate.models.detection")

CHECKPOINT_FORMAT = "kurate.detector/1"
#: Keyword of each builder family's own score cut-off, set to the pretagging score_threshold.
_SCORE_KW = {
    "fasterrcnn": "box_score_thresh",
    "retinanet": "score_thresh",
    "fcos": "score_thresh",
    "ssd": "score_thresh",
}


class TinyBackbone(nn.Module):
    """Four 3x3 convolutions, stride 8 overall: one feature map of ``width`` channels."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.out_channels = int(width)
        half = max(8, width // 2)
        self.body = nn.Sequential(
            nn.Conv2d(3, half, 3, 2, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(half, width, 3, 2, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 2, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 1, 1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """The feature map, keyed as torchvision's detection heads expect."""
        return OrderedDict([("0", self.body(x))])


def fcos_tiny(
    num_classes: int,
    width: int = 32,
    min_size: int = 64,
    max_size: int = 64,
    anchor_size: int = 16,
    **kw: Any,
) -> nn.Module:
    """A small FCOS: :class:`TinyBackbone` + a 2-convolution head; images resized to ``min_size``."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead

    return FCOS(
        TinyBackbone(width),
        num_classes=num_classes,
        min_size=min_size,
        max_size=max_size,
        anchor_generator=AnchorGenerator(((anchor_size,),), ((1.0,),)),
        head=FCOSHead(width, 1, num_classes, num_convs=2),
        **kw,
    )


def build_detector(architecture: str, num_classes: int, options: dict[str, Any] | None = None) -> nn.Module:
    """The detector, randomly initialised, with nothing downloaded."""
    opts = dict(options or {})
    try:
        if architecture == "fcos_tiny":
            return fcos_tiny(num_classes, **opts)
        import torchvision.models.detection as tvd

        builder = getattr(tvd, architecture, None)
        if builder is None:
            raise ConfigError(
                "pretagging_config", f"architecture: unknown torchvision detector {architecture!r}"
            )
        model: nn.Module = builder(weights=None, weights_backbone=None, num_classes=num_classes, **opts)
        return model
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            "pretagging_config", f"model_options: {architecture} does not accept {opts}: {exc}"
        ) from None


def save_detector(
    path: str,
    model: nn.Module,
    architecture: str,
    categories: list[dict[str, Any]] | list[str],
    options: dict[str, Any] | None = None,
    num_classes: int | None = None,
) -> None:
    """Save ``model`` atomically in kurate's detector checkpoint format."""
    cats = preds_io.categories_from(categories, "categories")
    n = int(num_classes if num_classes is not None else max(c["id"] for c in cats) + 1)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "architecture": architecture,
        "num_classes": n,
        "categories": cats,
        "options": dict(options or {}),
        "state_dict": {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()},
    }
    with storage.atomic_writer(path, "wb") as fh:
        torch.save(payload, fh)


def _state_dict(obj: Any, path: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
        if obj and all(k.startswith("model.") for k in obj):
            obj = {k[len("model.") :]: v for k, v in obj.items()}
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise KurateError(
            f"checkpoint {path}: not a detector checkpoint (expected a kurate detector checkpoint, "
            "{'model': state_dict} or a state_dict of tensors)"
        )
    return obj


def weights_path(settings: dict[str, Any]) -> str:
    """The weights file of ``settings``: its checkpoint, or torchvision's COCO weights found locally.

    COCO weights are never downloaded: missing ones are a :class:`ConfigError` saying how to get them.
    """
    if settings.get("weights") != "coco":
        return str(settings["checkpoint"])
    arch = str(settings["architecture"])
    found = coco.find_weights(arch)
    if not found:
        raise ConfigError("pretagging", coco.missing_weights_hint(arch))
    return found


def load_detector(settings: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """The detector of ``settings`` with its checkpoint's weights, and facts for the artifact's meta."""
    path = weights_path(settings)
    arch = str(settings["architecture"])
    try:
        with storage.local_copy(path) as local:  # a bucket object is downloaded to a temporary file
            obj = torch.load(local, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KurateError(f"checkpoint {path} cannot be loaded safely (weights_only): {msg}") from exc
    cats = list(settings.get("categories") or [])
    options: dict[str, Any] = {}
    num_classes = max((int(c["id"]) for c in cats), default=0) + 1
    if settings.get("weights") == "coco":
        num_classes = len(coco.COCO_LABELS)
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        if obj.get("architecture") != arch:
            raise ConfigError(
                "pretagging_config",
                f"architecture: {arch!r}, but the checkpoint {path} holds a {obj.get('architecture')!r}",
            )
        num_classes = int(obj["num_classes"])
        options = dict(obj.get("options") or {})
        cats = cats or list(obj.get("categories") or [])
        state = dict(obj["state_dict"])
    else:
        state = _state_dict(obj, path)
    if any(int(c["id"]) >= num_classes for c in cats):
        raise ConfigError(
            "pretagging_config",
            f"categories: ids up to {num_classes - 1} only (the checkpoint has {num_classes})",
        )
    options.update(settings.get("model_options") or {})
    family = next((f for f in _SCORE_KW if arch.startswith(f)), "")
    if family and _SCORE_KW[family] not in options:
        options[_SCORE_KW[family]] = float(settings.get("score_threshold", 0.5))
    model = build_detector(arch, num_classes, options)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es), e.g. {'; '.join(shapes[:2])}")
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:3])}")
        raise KurateError(
            f"checkpoint {path} does not fit {arch} with {num_classes} classes: {'; '.join(parts)}. "
            "Check architecture, categories and model_options in the pretagging settings."
        )
    model.load_state_dict(state, strict=True)
    model.eval()
    info = {
        "architecture": arch,
        "num_classes": num_classes,
        "categories": cats,
        "options": options,
        "weights": path,
    }
    return model, info


class _Stream(torch.utils.data.IterableDataset):
    """``(row, CHW float tensor in [0, 1] or None, reason)`` per sample, decoded in the loader workers.

    Runs of images and whole videos are dealt round-robin to the workers (each video decoded once).
    """

    def __init__(self, files: filelist.FileList, max_pixels: int) -> None:
        self.files = files
        self.max_pixels = max_pixels
        videos = files.columns.get("video") or [""] * len(files)
        self.units: list[list[int]] = []
        last = None
        for row, v in enumerate(videos):
            if self.units and last == v and (v or len(self.units[-1]) < 32):
                self.units[-1].append(row)
            else:
                self.units.append([row])
            last = v

    def __iter__(self) -> Any:

        info = torch.utils.data.get_worker_info()
        worker, n = (info.id, info.num_workers) if info is not None else (0, 1)
        for u, rows in enumerate(self.units):
            if u % n != worker:
                continue
            for row, img, reason in samples.iter_samples(self.files, rows, self.max_pixels):
                if img is None:
                    yield row, None, reason
                else:
                    arr = np.array(img, dtype=np.uint8)  # writable copy
                    yield row, torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0), ""


def _to_pil(t: torch.Tensor) -> Any:
    from PIL import Image

    arr = (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def predict_files(
    files: filelist.FileList,
    settings: dict[str, Any],
    *,
    max_pixels: int = image.DEFAULT_MAX_PIXELS,
    progress: bool = True,
    on_image: Any = None,
) -> tuple[list[list[preds_io.Prediction]], dict[str, Any]]:
    """Run the detector over every sample of ``files``; returns predictions in list order and facts.

    ``on_image`` (a :class:`kurate.models.pretag.DebugWriter`) receives the decoded image of each sample it
    ``wants``, with its predictions. Samples that cannot be decoded get no predictions and are listed
    in ``failed``.
    """
    from tqdm import tqdm

    from kurate.models.embedding import resolve_num_workers

    dev_name = str(settings.get("device", "auto"))
    dev = (
        torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if dev_name == "auto"
        else torch.device(dev_name)
    )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise KurateError("pretagging settings ask for device cuda, but no CUDA device is available")
    model, info = load_detector(settings)
    model = model.to(dev)
    thr = float(settings.get("score_threshold", 0.5))
    keep, categories = preds_io.kept_classes(info["categories"], settings.get("classes"))
    loader = torch.utils.data.DataLoader(
        _Stream(files, max_pixels),
        batch_size=int(settings.get("batch_size", 8)),
        num_workers=resolve_num_workers(int(settings.get("num_workers", 0))),
        collate_fn=list,
    )
    results: dict[int, list[preds_io.Prediction]] = {}
    sizes: dict[int, tuple[int, int]] = {}
    failed: list[list[str]] = []
    start = time.perf_counter()
    bar = tqdm(total=len(files), unit="img", file=sys.stderr, disable=not progress, mininterval=1.0)
    try:
        with torch.inference_mode():
            for batch in loader:
                ok = [(row, t) for row, t, _ in batch if t is not None]
                for row, t, why in batch:
                    if t is None:
                        failed.append([files.names[row], why])
                        results[row] = []
                if ok:
                    outputs = model([t.to(dev) for _, t in ok])
                    for (row, t), out in zip(ok, outputs, strict=True):
                        ps = _convert(out, thr, t.shape[2], t.shape[1])
                        if keep is not None:
                            ps = [p for p in ps if p["category_id"] in keep]
                        results[row] = ps
                        sizes[row] = (int(t.shape[2]), int(t.shape[1]))
                        if on_image is not None and on_image.wants(row):
                            on_image.add(row, _to_pil(t), ps)
                bar.update(len(batch))
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    preds = [results.get(r, []) for r in range(len(files))]
    what = "built-in detector" if settings.get("builtin") else "model"
    meta = {
        "source": f"{what} {info['architecture']} from {info['weights']}",
        "categories": categories,
        "score_threshold": thr,
        "model": {
            "architecture": info["architecture"],
            "num_classes": info["num_classes"],
            "options": info["options"],
            "checkpoint": info["weights"],
            **({"classes": list(settings["classes"])} if settings.get("classes") else {}),
        },
        "image_sizes": [list(sizes.get(r, (0, 0))) for r in range(len(files))],
        "device": str(dev),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(files) / seconds, 2) if seconds > 0 else 0.0,
        "failed": sorted(failed),
    }
    log.info("pretagged %d sample(s) on %s in %.1f s", len(files), dev, seconds)
    return preds, meta


def _convert(out: dict[str, torch.Tensor], thr: float, width: int, height: int) -> list[preds_io.Prediction]:
    """Torchvision's ``{"boxes" (x1, y1, x2, y2), "labels", "scores"}`` as Lightly records, score >= thr."""
    boxes = out["boxes"].detach().to("cpu", torch.float64)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    res = []
    for (x1, y1, x2, y2), label, score in zip(
        boxes.tolist(), out["labels"].tolist(), out["scores"].tolist(), strict=True
    ):
        if score < thr:
            continue
        res.append(
            preds_io.clean_prediction(
                {
                    "category_id": int(label),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": min(1.0, float(score)),
                }
            )
        )
    return res
