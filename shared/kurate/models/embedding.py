"""Embedding images with the same model, weights and transforms as ``lightly-embed``.

The model mirrors lightly 1.6's CLI (``lightly.cli._helpers.get_model_from_config``): a
``ResNetGenerator(name, width)`` whose children except the final linear layer are wrapped as::

    backbone = Sequential(BatchNorm2d(3), conv1, bn1, layer1..layer4,
                          Conv2d(last_channels, num_ftrs, 1), AdaptiveAvgPool2d(1))

(``backbone.0`` is lightly's input BatchNorm; note there is no ReLU after ``bn1`` in this wrapping,
exactly as in lightly) plus ``projection_head = SimCLRProjectionHead(num_ftrs, num_ftrs, out_dim,
batch_norm=False)``. The parameter names are therefore those of lightly's ``_SimCLR`` and the
checkpoints of ``lightly-ssl-train`` (PyTorch Lightning ``.ckpt`` files whose ``state_dict`` keys are
``model.backbone.*`` / ``model.projection_head.layers.*``) load unchanged. The embedding of an image
is the flattened backbone output (``num_ftrs`` floats), as ``lightly-embed`` computes it.

Importing this module has no side effects; lightly is imported lazily.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from kurate.errors import ConfigError, CorruptFileError, KurateError
from kurate.io import filelist, storage
from kurate.media import image

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "kurate.checkpoint/1"
#: Environment variable choosing the CPU forward: ``auto`` (ONNX Runtime when installed, else torch),
#: ``onnxruntime`` or ``torch`` (the reference path). A GPU always runs torch.
BACKEND_ENV = "KURATE_EMBED_BACKEND"
#: Environment variable naming a folder that holds Lightly model-zoo files (checked before the
#: torch hub cache).
WEIGHTS_DIR_ENV = "KURATE_WEIGHTS_DIR"
#: ImageNet statistics, as ``lightly-embed`` normalises.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESNET_LAYERS: dict[tuple[str, tuple[int, ...]], str] = {
    ("basic", (1, 1, 1, 1)): "resnet-9",
    ("basic", (2, 2, 2, 2)): "resnet-18",
    ("basic", (3, 4, 6, 3)): "resnet-34",
    ("bottleneck", (3, 4, 6, 3)): "resnet-50",
    ("bottleneck", (3, 4, 23, 3)): "resnet-101",
    ("bottleneck", (3, 8, 36, 3)): "resnet-152",
}
MODEL_NAMES = tuple(_RESNET_LAYERS.values())


# --------------------------------------------------------------------------- model


class LightlyCLIModel(nn.Module):
    """Lightly's CLI SimCLR model: ``backbone`` + ``projection_head`` (same state-dict keys)."""

    def __init__(self, backbone: nn.Module, projection_head: nn.Module, config: dict[str, Any]) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection_head = projection_head
        #: ``{"name", "width", "num_ftrs", "out_dim"}`` the model was built with.
        self.config = dict(config)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding: flattened backbone features, ``(batch, num_ftrs)``."""
        return self.backbone(x).flatten(start_dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projection of ``x`` (what the self-supervised loss sees), as lightly's ``_SimCLR``."""
        return self.projection_head(self.embed(x))


def model_config(name: str = "resnet-18", width: float = 1.0, num_ftrs: int = 32, out_dim: int = 128) -> dict:
    """The canonical model-settings dict stored with checkpoints and embeddings."""
    return {"name": str(name), "width": float(width), "num_ftrs": int(num_ftrs), "out_dim": int(out_dim)}


def describe_config(cfg: dict[str, Any]) -> str:
    """``model.name=resnet-18, model.width=1.0, ...`` for messages."""
    return ", ".join(f"model.{k}={cfg[k]}" for k in ("name", "width", "num_ftrs", "out_dim") if k in cfg)


def build_model(
    name: str = "resnet-18", width: float = 1.0, num_ftrs: int = 32, out_dim: int = 128
) -> LightlyCLIModel:
    """The model ``lightly-embed`` / ``lightly-ssl-train`` use, randomly initialised (torch's RNG).

    Built from :mod:`kurate.models.resnet` (lightly's modules, same weights for the same seed) so that
    embedding never pays lightly's import (torchvision, 1.5 s per process).
    """
    from kurate.models import resnet

    if name not in MODEL_NAMES:
        raise ConfigError("model.name", f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    if not width > 0:
        raise ConfigError("model.width", f"must be positive, got {width}")
    if int(num_ftrs) < 1 or int(out_dim) < 1:
        raise ConfigError("model.num_ftrs", f"num_ftrs and out_dim must be >= 1, got {num_ftrs}, {out_dim}")
    children = resnet.resnet_children(name, width)
    last = children[-1]
    assert isinstance(last, nn.Linear)
    last_conv_channels = last.in_features
    backbone = nn.Sequential(
        nn.BatchNorm2d(3),  # lightly: get_norm_layer(3, 0)
        *children[:-1],
        nn.Conv2d(last_conv_channels, int(num_ftrs), 1),
        nn.AdaptiveAvgPool2d(1),
    )
    head = resnet.ProjectionHead(int(num_ftrs), int(num_ftrs), int(out_dim))
    return LightlyCLIModel(backbone, head, model_config(name, width, num_ftrs, out_dim))


def _seeded_model(cfg: dict[str, Any], seed: int) -> LightlyCLIModel:
    """Build the model with a fixed initialisation, without disturbing the global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(cfg["name"], cfg["width"], cfg["num_ftrs"], cfg["out_dim"])


# --------------------------------------------------------------------------- checkpoints


def _torch_load(path: str) -> Any:
    """``torch.load(weights_only=True)`` of a local file or a bucket object (via a temporary copy)."""
    try:
        with storage.local_copy(path) as local:
            if not os.path.isfile(local):
                raise FileNotFoundError(local)
            try:
                return torch.load(local, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise KurateError(
                    f"checkpoint {path} cannot be loaded safely (weights_only): {msg}. Expected a "
                    f"lightly-ssl-train .ckpt, a kurate checkpoint or a state dict of tensors."
                ) from exc
    except FileNotFoundError:
        raise KurateError(f"checkpoint {path} does not exist") from None


def _lightly_state_dict(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Keys of a lightly CLI / PyTorch Lightning ``state_dict`` as our model names them.

    Mirrors ``lightly.cli._helpers.load_from_state_dict``: drop the first key component (``model.``,
    the LightningModule attribute), rename the pre-1.0.6 ``features`` backbone to ``backbone`` and
    insert ``layers`` into old projection-head keys.
    """
    own_roots = ("backbone", "features", "projection_head")
    if any(k.startswith("model.") for k in state_dict):
        # A Lightning checkpoint may hold other submodules' state (e.g. a loss); only "model." is ours.
        items = [(k.split(".", 1)[1], v) for k, v in state_dict.items() if k.startswith("model.")]
    elif all(k.split(".", 1)[0] in own_roots for k in state_dict):
        items = list(state_dict.items())  # already unprefixed: {"state_dict": model.state_dict()}
    else:  # lightly drops the first component, whatever it is
        items = [(k.split(".", 1)[1] if "." in k else k, v) for k, v in state_dict.items()]
    out: dict[str, Any] = {}
    for key, value in items:
        parts = ["backbone" if p == "features" else p for p in key.split(".")]
        if parts[0] in ("projection_head", "prediction_head") and "layers" not in parts:
            parts.insert(1, "layers")
        out[".".join(parts)] = value
    return out


def _guess_config(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Best-effort model settings a (full-model) state dict was made with, for error messages."""
    guess: dict[str, Any] = {}
    try:
        conv1 = state_dict.get("backbone.1.weight")
        if conv1 is not None:
            guess["width"] = conv1.shape[0] / 64
        last = state_dict.get("backbone.7.weight")
        if last is not None:
            guess["num_ftrs"] = last.shape[0]
        head = state_dict.get("projection_head.layers.2.weight")
        if head is not None:
            guess["out_dim"] = head.shape[0]
        kind = "bottleneck" if any(".conv3." in k for k in state_dict) else "basic"
        counts = []
        for layer in range(3, 7):
            blocks = {k.split(".")[2] for k in state_dict if k.startswith(f"backbone.{layer}.")}
            counts.append(len(blocks))
        name = _RESNET_LAYERS.get((kind, tuple(counts)))
        if name:
            guess = {"name": name, **guess}
    except (AttributeError, IndexError, TypeError):
        pass
    return guess


def _load_into(
    module: nn.Module, state_dict: dict[str, Any], source: str, cfg: dict[str, Any], prefix=""
) -> None:
    """Strictly load ``state_dict``, turning key/shape mismatches into one clear KurateError."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    bad_shape = [
        f"{prefix}{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)
    ]
    not_tensor = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if missing or unexpected or bad_shape or not_tensor:
        problems = []
        if bad_shape:
            problems.append(f"{len(bad_shape)} shape mismatch(es), e.g. {'; '.join(bad_shape[:3])}")
        if missing:
            problems.append(
                f"{len(missing)} missing key(s), e.g. {', '.join(prefix + k for k in missing[:3])}"
            )
        if unexpected:
            problems.append(
                f"{len(unexpected)} unexpected key(s), e.g. {', '.join(prefix + k for k in unexpected[:3])}"
            )
        if not_tensor:
            problems.append(f"non-tensor value(s) for {', '.join(not_tensor[:3])}")
        guess = _guess_config(state_dict if not prefix else {prefix + k: v for k, v in state_dict.items()})
        hint = f" The checkpoint looks like {describe_config(guess)}." if guess else ""
        raise KurateError(
            f"checkpoint {source} does not fit the model {describe_config(cfg)}: {'; '.join(problems)}."
            f"{hint} Set the model.* settings the checkpoint was trained with."
        )
    module.load_state_dict(state_dict, strict=True)


def load_weights(model: LightlyCLIModel, checkpoint: str) -> str:
    """Load ``checkpoint`` into ``model``; returns a short description of the weights' origin.

    Accepted layouts (all read with ``torch.load(weights_only=True)``):

    (a) a lightly CLI checkpoint: ``lightly-ssl-train``'s PyTorch Lightning ``.ckpt`` or a model-zoo
        ``.pth``: ``{"state_dict": {"model.backbone.0.weight": ..., "model.projection_head.layers.0.weight":
        ...}, ...}`` (key rewriting as lightly's ``load_from_state_dict``);
    (b) kurate's own: ``{"format": "kurate.checkpoint/1", "model": {name, width, num_ftrs, out_dim},
        "state_dict": {...}}`` (see :func:`save_checkpoint`); the model settings must match;
    (c) a plain state dict: of the whole model (``backbone.*``, ``projection_head.*``) or of the
        backbone alone (``0.weight``, ...; the projection head, unused for embeddings, stays as is).
    """
    cfg = getattr(model, "config", {})
    obj = _torch_load(checkpoint)
    if not isinstance(obj, dict):
        raise KurateError(f"checkpoint {checkpoint}: expected a dict, got {type(obj).__name__}")
    if obj.get("format") == CHECKPOINT_FORMAT:
        saved = obj.get("model")
        if not isinstance(saved, dict) or set(saved) != {"name", "width", "num_ftrs", "out_dim"}:
            raise KurateError(f"checkpoint {checkpoint}: kurate checkpoint without valid model settings")
        if model_config(**saved) != model_config(**cfg):
            raise KurateError(
                f"checkpoint {checkpoint} was saved for {describe_config(model_config(**saved))} but the "
                f"model is {describe_config(cfg)}; set the model.* settings to match the checkpoint"
            )
        _load_into(model, obj["state_dict"], checkpoint, cfg)
        return f"kurate checkpoint {checkpoint}"
    if "state_dict" in obj:
        if not isinstance(obj["state_dict"], dict) or not obj["state_dict"]:
            raise KurateError(f"checkpoint {checkpoint} holds no weights (empty 'state_dict')")
        _load_into(model, _lightly_state_dict(obj["state_dict"]), checkpoint, cfg)
        return f"lightly checkpoint {checkpoint}"
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if any(k.startswith("backbone.") for k in obj):
            _load_into(model, _lightly_state_dict({f"model.{k}": v for k, v in obj.items()}), checkpoint, cfg)
            return f"model state dict {checkpoint}"
        _load_into(model.backbone, dict(obj), checkpoint, cfg, prefix="backbone.")
        return f"backbone state dict {checkpoint}"
    raise KurateError(
        f"checkpoint {checkpoint}: unknown layout (keys {', '.join(map(str, list(obj)[:5]))}); expected a "
        f"lightly-ssl-train .ckpt, a kurate checkpoint or a state dict"
    )


def save_checkpoint(path: str, model: LightlyCLIModel, model_cfg: dict[str, Any] | None = None) -> None:
    """Save ``model`` atomically in kurate's checkpoint format (readable by :func:`load_weights`)."""
    cfg = model_config(**(model_cfg if model_cfg is not None else model.config))
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "model": cfg, "state_dict": state}
    with storage.atomic_writer(path, "wb") as fh:
        torch.save(payload, fh)


# --------------------------------------------------------------------------- pretrained weights


def zoo_key(cfg: dict[str, Any]) -> str:
    """Lightly's model-zoo key for the settings (``lightly.cli._helpers.get_ptmodel_from_config``)."""
    return f"{cfg['name']}/simclr/d{int(cfg['num_ftrs'])}/w{float(cfg['width'])}"


def lightly_zoo() -> dict[str, str]:
    """Lightly's model zoo table (``lightly/models/zoo.py``), read without importing ``lightly.models``.

    That import pulls in torchvision (1.5 s per process); the table is a plain dict in its own file.
    """
    import importlib.util
    import runpy

    spec = importlib.util.find_spec("lightly")  # locates the package without running it
    path = os.path.join(os.path.dirname(spec.origin), "models", "zoo.py") if spec and spec.origin else ""
    if path and os.path.isfile(path):
        table = runpy.run_path(path).get("ZOO")
        if isinstance(table, dict):
            return {str(k): str(v) for k, v in table.items()}
    from lightly.models import ZOO  # another layout: the slow way

    return dict(ZOO)


def zoo_url(cfg: dict[str, Any]) -> str:
    """The model-zoo URL for the settings, or '' if lightly publishes none."""
    return str(lightly_zoo().get(zoo_key(cfg), ""))


def find_pretrained(cfg: dict[str, Any]) -> tuple[str, list[str]]:
    """``(local file or '', places looked)`` for the model-zoo weights of ``cfg``; never downloads.

    Looks in ``$KURATE_WEIGHTS_DIR/<file>`` then ``torch.hub.get_dir()/checkpoints/<file>`` (where
    ``lightly-embed`` / ``torch.hub`` cache their download), ``<file>`` being the URL's basename.
    """
    url = zoo_url(cfg)
    if not url:
        return "", []
    base = url.rsplit("/", 1)[-1]
    candidates = []
    if os.environ.get(WEIGHTS_DIR_ENV):
        candidates.append(os.path.join(os.environ[WEIGHTS_DIR_ENV], base))
    candidates.append(os.path.join(torch.hub.get_dir(), "checkpoints", base))
    for cand in candidates:
        if os.path.isfile(cand):
            return cand, candidates
    return "", candidates


def weights_identity(
    cfg: dict[str, Any], checkpoint: str = "", pre_trained: bool = True, seed: int = 1
) -> str:
    """What the embedding weights are, as :func:`prepare_model` will choose them (for the cache key).

    ``sha256:<hex>`` of the checkpoint or of the local model-zoo file, else ``random:<seed>``.
    """
    import hashlib

    if checkpoint:
        try:
            return "sha256:" + hashlib.sha256(storage.read_bytes(checkpoint)).hexdigest()
        except FileNotFoundError:
            raise KurateError(f"checkpoint {checkpoint} does not exist") from None
    if pre_trained:
        path, _ = find_pretrained(model_config(**cfg))
        if path:
            with open(path, "rb") as fh:
                return "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()
    return f"random:{int(seed)}"


def _random_init_banner(cfg: dict[str, Any], why: str, seed: int) -> str:
    line = "!" * 96
    return "\n".join(
        [
            line,
            "!!! EMBEDDINGS FROM A RANDOMLY INITIALISED MODEL ARE NOT MEANINGFUL",
            f"!!! {why}",
            f"!!! Using random weights for {describe_config(cfg)} (seed {seed}); similarity search,",
            "!!! diversity selection and duplicate detection on these embeddings are close to arbitrary.",
            "!!! To use real weights: set `checkpoint` to a lightly-ssl-train .ckpt or kurate checkpoint,",
            f"!!! or place the Lightly model-zoo file ({zoo_url(cfg) or 'none published for this model'})",
            f"!!! in ${WEIGHTS_DIR_ENV}/ or {torch.hub.get_dir()}/checkpoints/",
            "!!! (kurate never downloads weights).",
            line,
        ]
    )


def prepare_model(
    model_name: str = "resnet-18",
    width: float = 1.0,
    num_ftrs: int = 32,
    out_dim: int = 128,
    *,
    checkpoint: str = "",
    pre_trained: bool = True,
    seed: int = 1,
) -> tuple[LightlyCLIModel, str]:
    """Build the model and give it weights: ``(model, weights_source)`` (model on CPU, eval mode).

    ``checkpoint`` wins; else, with ``pre_trained``, the local model-zoo file; else (or if no file is
    there) a random initialisation from ``seed`` with a loud warning.
    """
    cfg = model_config(model_name, width, num_ftrs, out_dim)
    model = _seeded_model(cfg, seed)
    if checkpoint:
        source = load_weights(model, checkpoint)
    else:
        source = ""
        if pre_trained:
            path, looked = find_pretrained(cfg)
            if path:
                load_weights(model, path)
                source = f"lightly model zoo {zoo_key(cfg)} ({path})"
                logger.info("using pretrained weights %s", source)
            elif looked:
                why = f"Model-zoo weights {zoo_key(cfg)} not found locally (looked in {', '.join(looked)})."
            else:
                why = f"Lightly publishes no pretrained weights for {zoo_key(cfg)}."
        else:
            why = "No checkpoint given and pre_trained is false."
        if not source:
            logger.warning("\n%s", _random_init_banner(cfg, why, seed))
            source = f"random initialisation (seed {seed})"
    model.eval()
    return model, source


# --------------------------------------------------------------------------- embedding


@dataclass
class EmbedResult:
    """What :func:`embed_files` produced."""

    names: list[str]
    embeddings: np.ndarray
    failed: list[tuple[str, str]] = field(default_factory=list)
    weights_source: str = ""
    device: str = "cpu"
    images_per_second: float = 0.0
    compute_efficiency: float = 0.0
    seconds: float = 0.0
    #: What ran the forward: "onnxruntime" (the fast CPU path) or "torch" (the reference).
    backend: str = "torch"


class _Transform:
    """``lightly-embed``'s transform, bit for bit, without importing torchvision.

    torchvision's ``Resize((s, s))`` (Pillow's bilinear resize of the PIL image), ``ToImage``,
    ``ToDtype(float32, scale=True)`` (x * (1/255)) and ``Normalize`` (ImageNet), written out.
    """

    def __init__(self, input_size: int) -> None:
        self.size = int(input_size)
        self.mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        small = img.resize((self.size, self.size), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.array(small, dtype=np.uint8)).permute(2, 0, 1).to(torch.float32)
        return (x.mul(1 / 255) - self.mean) / self.std


def build_transform(input_size: int) -> Any:
    """``lightly-embed``'s transform: Resize((s, s)), ToTensor, Normalize (see :class:`_Transform`)."""
    return _Transform(input_size)


class _ImageDataset(torch.utils.data.Dataset):
    """Items ``(tensor, ok, reason)``: failures yield a zero tensor, ``ok=False`` and the reason."""

    def __init__(
        self, root: str, names: list[str], input_size: int, max_pixels: int, fast_decode: bool = False
    ) -> None:
        self.root = root
        self.names = names
        self.input_size = int(input_size)
        self.max_pixels = max_pixels
        self.transform = build_transform(input_size)
        # kurate.fast_embed_decode: JPEGs decoded DCT-scaled to at least the input size (not exact).
        self.reduce_to = self.input_size if fast_decode else 0

    def __len__(self) -> int:
        return len(self.names)

    def _item(self, name: str, data: bytes | OSError) -> tuple[torch.Tensor, bool, str]:
        """``(tensor, True, sha256 of the bytes decoded)`` or ``(zeros, False, why)``."""
        try:
            if isinstance(data, FileNotFoundError):
                raise CorruptFileError(name, "file disappeared after listing")
            if isinstance(data, OSError):  # e.g. permission denied on one file
                raise CorruptFileError(name, f"cannot read file: {data.strerror or data}")
            img = image.decode_image(data, name, self.max_pixels, reduce_to=self.reduce_to)
            return self.transform(img), True, hashlib.sha256(data).hexdigest()
        except CorruptFileError as exc:
            return torch.zeros(3, self.input_size, self.input_size), False, exc.reason

    def __getitem__(self, index: int) -> tuple[torch.Tensor, bool, str]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, bool, str]]:
        """A whole batch at once (torch's fetcher calls this): bucket reads overlap in a bounded pool."""
        uris = (filelist.sample_uri(self.root, self.names[i]) for i in indices)
        reads = storage.read_many(uris, storage.read_threads(self.root))
        return [self._item(self.names[i], data) for i, (_, data) in zip(indices, reads, strict=True)]


def _collate(batch: list[tuple[torch.Tensor, bool, str]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    images = torch.stack([b[0] for b in batch])
    ok = torch.tensor([b[1] for b in batch], dtype=torch.bool)
    return images, ok, [b[2] for b in batch]


def _collate_indexed(
    batch: list[tuple[int, torch.Tensor, bool, str]],
) -> tuple[torch.Tensor, torch.Tensor, list[str], list[int]]:
    images, ok, reasons = _collate([b[1:] for b in batch])  # type: ignore[misc]
    return images, ok, reasons, [b[0] for b in batch]


class _SampleStream(torch.utils.data.IterableDataset):
    """Images and video frames as a stream of ``(row, tensor, ok, reason)``, decoded in the workers.

    The list is cut into units, a run of images or one video's listed frames, dealt round-robin to
    the DataLoader workers; a worker decodes its videos front to back (each frame once, one at a
    time, resized by swscale), so memory does not grow with the number or length of videos. Rows
    carry their position, and :func:`embed_files` puts results back in list order: the output is the
    same for any number of workers.
    """

    def __init__(
        self,
        files: filelist.FileList,
        input_size: int,
        max_pixels: int,
        threads: int,
        fast_decode: bool = False,
    ) -> None:
        self.images = _ImageDataset(files.root, list(files.names), input_size, max_pixels, fast_decode)
        self.root = files.root
        self.size = int(input_size)
        self.threads = threads
        videos = files.columns.get("video") or [""] * len(files)
        self.frames = files.columns.get("frame") or [""] * len(files)
        self.units: list[tuple[str, list[int]]] = []
        for row, v in enumerate(videos):
            last = self.units[-1] if self.units else None
            if last is not None and last[0] == v and (v or len(last[1]) < 64):
                last[1].append(row)
            else:
                self.units.append((v, [row]))
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
        self.mean, self.std = mean, std

    def __iter__(self) -> Any:
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for u, (vid, rows) in enumerate(self.units):
            if u % n_workers != worker:
                continue
            if not vid:
                for row in rows:
                    yield (row, *self.images[row])
            else:
                yield from self._video(vid, rows)

    def _failed(self, row: int, reason: str) -> tuple[int, torch.Tensor, bool, str]:
        return row, torch.zeros(3, self.size, self.size), False, reason

    def _video(self, vid: str, rows: list[int]) -> Any:
        from kurate.media import video

        want = {int(self.frames[r]): r for r in rows if self.frames[r]}
        whole = [r for r in rows if not self.frames[r]]
        held = 0
        try:
            with video.open_video(filelist.sample_uri(self.root, vid)) as container:
                if whole:  # listed as one sample (ingest found no frames): it cannot be embedded
                    for r in whole:
                        yield self._failed(r, "video holds no usable frames")
                    return
                stop = max(want) if want else 0
                for df in video.iter_frames(container, self.threads, stop_after=stop):
                    held = df.index + 1
                    row = want.pop(df.index, None)
                    if row is None:
                        continue
                    if df.frame is None:
                        yield self._failed(row, df.reason)
                        continue
                    digest = video.pixel_hash(df.frame)  # what the check hashes: the decoded pixels
                    arr = video.to_rgb(df.frame, (self.size, self.size))
                    x = torch.from_numpy(arr).permute(2, 0, 1).to(torch.float32).div_(255.0)
                    yield row, (x - self.mean) / self.std, True, digest
        except CorruptFileError as exc:
            for r in [*whole, *want.values()]:
                yield self._failed(r, exc.reason)
            return
        for _, row in sorted(want.items()):
            yield self._failed(row, f"frame missing: the file holds {held} frame(s)")


class _CropStream(torch.utils.data.IterableDataset):
    """Object crops (``object_level``) as ``(row, tensor, ok, reason)``, cut in the loader workers.

    The crops of one image (or all crops of one video's frames) form a unit, so each image is decoded
    once; units (runs of up to 16 images) are dealt round-robin to the workers and rows put back in
    order by :func:`embed_files`, as for videos.
    """

    def __init__(self, files: filelist.FileList, input_size: int, max_pixels: int) -> None:
        from kurate.media import crops

        self.files = files
        self.size = int(input_size)
        self.max_pixels = max_pixels
        self.transform = build_transform(input_size)
        videos = files.columns.get("video") or [""] * len(files)
        self.units: list[list[int]] = []
        last, parents, video_unit = None, 0, False
        for row, (v, img) in enumerate(zip(videos, files.columns["image"], strict=True)):
            key = v or img
            if key != last:  # the crops of a new image (or of another video's frames)
                if not self.units or v or video_unit or parents >= 16:
                    self.units.append([])
                    parents, video_unit = 0, bool(v)
                parents += 1
            self.units[-1].append(row)
            last = key
        self.padding = crops.padding_of(files)
        self.hashes = files.columns.get("sha256") or [""] * len(files)

    def __iter__(self) -> Any:
        from kurate.media import crops

        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for u, rows in enumerate(self.units):
            if u % n_workers != worker:
                continue
            for row, img, reason in crops.iter_crops(self.files, rows, self.max_pixels, self.padding):
                if img is None:
                    yield row, torch.zeros(3, self.size, self.size), False, reason
                else:  # a crop's cache key is the list's (its image's checked hash, box and padding)
                    yield row, self.transform(img), True, self.hashes[row]


def _forward(model: LightlyCLIModel, dev: torch.device) -> tuple[Callable[[torch.Tensor], np.ndarray], str]:
    """The embedding forward ``(batch tensor -> float32 array)`` and which backend runs it.

    On the CPU, ONNX Runtime runs the same graph about 3x faster than eager torch for these ResNets
    (fused conv + batch norm + ReLU in its blocked layout; ``bench/results.md``), agreeing within
    float rounding (tests pin <= 1e-4; measured ~1e-7). torch is the reference path and the fallback:
    a GPU, ``KURATE_EMBED_BACKEND=torch``, onnxruntime not installed, or a model the graph builder
    does not know.
    """
    choice = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "onnxruntime", "torch"):
        raise ConfigError(BACKEND_ENV, f"got {choice!r}; allowed: auto, onnxruntime, torch")

    def torch_forward(x: torch.Tensor) -> np.ndarray:
        x = x.to(dev, non_blocking=True)
        return model.embed(x).to("cpu", torch.float32).numpy()  # .cpu() synchronises

    if dev.type != "cpu" or choice == "torch":
        return torch_forward, "torch"
    from kurate.models import onnx_backbone

    if not onnx_backbone.available():
        if choice == "onnxruntime":
            raise ConfigError(BACKEND_ENV, "onnxruntime is not installed (pip install 'kurate[embed]')")
        return torch_forward, "torch"
    try:
        fast = onnx_backbone.OnnxBackbone(model.backbone, torch.get_num_threads())
    except onnx_backbone.Unsupported as exc:
        logger.info("embedding with torch: the ONNX graph builder does not know %s", exc)
        return torch_forward, "torch"
    except Exception as exc:  # noqa: BLE001 - an ONNX Runtime that refuses the graph: torch still works
        if choice == "onnxruntime":
            raise
        logger.warning("embedding with torch: ONNX Runtime failed to load the model (%s)", exc)
        return torch_forward, "torch"
    return (lambda x: fast(x.numpy())), "onnxruntime"


def resolve_num_workers(num_workers: int) -> int:
    """-1 means every core this process may use."""
    if num_workers >= 0:
        return int(num_workers)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when available (or as asked), else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def embed_files(
    files: filelist.FileList,
    *,
    model_name: str = "resnet-18",
    width: float = 1.0,
    num_ftrs: int = 32,
    out_dim: int = 128,
    input_size: int = 64,
    batch_size: int = 16,
    num_workers: int = -1,
    checkpoint: str = "",
    pre_trained: bool = True,
    seed: int = 1,
    device: str | torch.device | None = None,
    max_pixels: int = image.DEFAULT_MAX_PIXELS,
    progress: bool = True,
    on_batch: Callable[[list[int], np.ndarray, list[str]], None] | None = None,
    fast_decode: bool = False,
) -> EmbedResult:
    """Embed every file of ``files`` (in order) like ``lightly-embed``; undecodable files go to ``failed``.

    Never shuffles or drops rows. ``on_batch(rows, embeddings, digests)`` is called after each batch
    with the list positions it embedded and the sha256 of the content each was decoded from (file
    bytes; a video frame's pixels, as the check hashes them): the embedding cache writes them as they
    come, keyed by what was really embedded. Shows a tqdm bar on
    stderr with the running images/s and compute efficiency (model time incl. host-to-device copy /
    total batch time incl. waiting for the loader).
    """
    from tqdm import tqdm

    if batch_size < 1:
        raise ConfigError("loader.batch_size", f"must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    model, source = prepare_model(
        model_name, width, num_ftrs, out_dim, checkpoint=checkpoint, pre_trained=pre_trained, seed=seed
    )
    model = model.to(dev).eval()
    forward, backend = _forward(model, dev)
    if dev.type == "cuda":
        # As lightly-embed: reproducible embeddings.
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False

    names = list(files.names)
    workers = resolve_num_workers(num_workers)
    is_crops = "image" in files.columns and "bbox" in files.columns  # object_level: the samples are crops
    has_video = is_crops or any(files.columns.get("video") or [])  # both: a stream of indexed rows
    dataset: torch.utils.data.Dataset
    if is_crops:
        dataset = _CropStream(files, input_size, max_pixels)
    elif has_video:
        dataset = _SampleStream(
            files, input_size, max_pixels, threads=1 if workers else 0, fast_decode=fast_decode
        )
    else:
        dataset = _ImageDataset(files.root, names, input_size, max_pixels, fast_decode)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=int(batch_size),
        shuffle=False,
        drop_last=False,
        num_workers=workers,
        collate_fn=_collate_indexed if has_video else _collate,
        pin_memory=dev.type == "cuda",
    )

    chunks: list[np.ndarray] = []
    kept: list[int] = []
    failed_rows: list[tuple[int, str]] = []
    compute_s = 0.0
    done = 0
    start = time.perf_counter()
    bar = tqdm(total=len(names), unit="img", file=sys.stderr, disable=not progress, mininterval=1.0)
    try:
        with torch.inference_mode():
            for batch in loader:
                images, ok, reasons = batch[:3]  # a failed row's reason, an ok row's content hash
                t1 = time.perf_counter()
                n = int(images.shape[0])
                rows = batch[3] if has_video else range(done, done + n)
                ok_np = ok.numpy()
                for j in np.flatnonzero(~ok_np):
                    failed_rows.append((int(rows[j]), reasons[j]))
                if ok_np.any():
                    x = images[ok] if not ok_np.all() else images
                    chunks.append(forward(x))
                    done_rows = [int(rows[j]) for j in np.flatnonzero(ok_np)]
                    kept.extend(done_rows)
                    if on_batch is not None:
                        on_batch(done_rows, chunks[-1], [reasons[j] for j in np.flatnonzero(ok_np)])
                t2 = time.perf_counter()
                compute_s += t2 - t1
                done += n
                elapsed = t2 - start
                bar.set_postfix(
                    {"img/s": f"{done / elapsed:.1f}", "compute_eff": f"{compute_s / elapsed:.2f}"},
                    refresh=False,
                )
                bar.update(n)
    finally:
        bar.close()
    total = time.perf_counter() - start
    embeddings = np.concatenate(chunks) if chunks else np.zeros((0, int(num_ftrs)), np.float32)
    if has_video:  # workers interleave their streams: back to list order
        order = np.argsort(np.asarray(kept, dtype=np.int64), kind="stable")
        embeddings, kept = embeddings[order], [kept[i] for i in order]
    failed = [(names[r], why) for r, why in sorted(failed_rows)]
    result = EmbedResult(
        names=[names[i] for i in kept],
        embeddings=np.ascontiguousarray(embeddings, dtype=np.float32),
        failed=failed,
        weights_source=source,
        device=str(dev),
        images_per_second=done / total if total > 0 else 0.0,
        compute_efficiency=compute_s / total if total > 0 else 0.0,
        seconds=total,
        backend=backend,
    )
    logger.info(
        "embedded %d images (%d failed) on %s (%s) in %.1fs: %.1f images/s, compute efficiency %.2f",
        len(result.names),
        len(failed),
        result.device,
        backend,
        total,
        result.images_per_second,
        result.compute_efficiency,
    )
    return result
