"""Self-supervised training (SimCLR) of lightly's CLI model on the user's own images.

What ``lightly-ssl-train`` does, with the same building blocks and the same keys: the model of
:func:`kurate.models.embedding.build_model` (``ResNetGenerator`` backbone + ``SimCLRProjectionHead``),
lightly's ``NTXentLoss(temperature, memory_bank_size)``, ``SimCLRTransform(**collate)`` views, SGD with
``lr``/``weight_decay`` and a PyTorch Lightning ``Trainer``. The LightningModule holds the network as
``self.model``, so its checkpoints have lightly's keys (``model.backbone.*``, ``model.projection_head.*``)
and load in ``lightly-embed`` as well as through kurate's ``checkpoint=``.

Differences from lightly's CLI, on purpose:

* images are decoded by :mod:`kurate.media.image` from the check phase's clean list (any folder depth, buckets
  later); an image that fails to decode is skipped and reported, never fatal;
* epoch checkpoints live in a stable folder (the run's ``checkpoints/``), written atomically; a rerun
  resumes from ``last.ckpt``. Batch order and augmentations are a function of ``(seed, epoch, batch)``
  only, so a resumed run ends with the same weights as an uninterrupted one (on the CPU; GPU kernels
  may differ in the last bits), whatever the loader's worker count;
* Lightning 1 keys are mapped (``trainer.gpus``, ``precision: 16``), multi-GPU is refused, no
  ``lightning_logs/`` is written to the working directory, and nothing is ever downloaded.

Importing this module imports torch and Lightning (the train phase imports it only when training is
enabled) and has no side effects; lightly is imported when training starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint, ModelSummary, TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm

from kurate.config.load import ACCELERATORS, PRECISIONS_GPU_ONLY, normalise_precision, single_device_count
from kurate.errors import ConfigError, CorruptFileError, KurateError
from kurate.io import filelist, storage
from kurate.media import image, samples
from kurate.models import embedding

logger = logging.getLogger(__name__)

#: File names inside the training checkpoint folder (those of lightly's ModelCheckpoint).
LAST_CKPT = "last.ckpt"
EPOCH_CKPT_RE = re.compile(r"^lightly_epoch_\d+(-v\d+)?\.ckpt$")
#: The run-level output: the trained model, beside the run's other outputs.
LATEST_NAME = "checkpoint_latest.ckpt"

#: SimCLRTransform arguments read from ``lightly.collate`` (``kernel_size`` is deprecated in lightly).
COLLATE_KEYS = (
    "input_size",
    "cj_prob",
    "cj_bright",
    "cj_contrast",
    "cj_sat",
    "cj_hue",
    "min_scale",
    "random_gray_scale",
    "gaussian_blur",
    "sigmas",
    "vf_prob",
    "hf_prob",
    "rr_prob",
    "rr_degrees",
)


# --------------------------------------------------------------------------- settings


@dataclass
class TrainSettings:
    """Everything one training run needs, parsed from the train task's keys (spec names)."""

    model: dict[str, Any] = field(default_factory=lambda: embedding.model_config())
    temperature: float = 0.5
    memory_bank_size: int = 0
    lr: float = 1.0
    weight_decay: float = 1e-5
    collate: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 16
    shuffle: bool = True
    num_workers: int = -1
    drop_last: bool = True
    max_epochs: int = 100
    precision: Any = 32
    accelerator: Any = None
    devices: Any = None
    gpus: Any = None
    enable_model_summary: bool = True
    summary_max_depth: int = 1
    save_top_k: int = 1
    seed: int = 1
    checkpoint: str = ""  # weights to start from (as lightly-ssl-train's checkpoint=)
    pre_trained: bool = True  # start from the local model-zoo file when there is one
    max_pixels: int = image.DEFAULT_MAX_PIXELS

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrainSettings:
        """Settings from the train task's JSON keys (see :func:`kurate.plan.make_plan`)."""
        lc = config.get("lightly") or {}
        m = lc.get("model") or {}
        crit = lc.get("criterion") or {}
        opt = lc.get("optimizer") or {}
        loader = lc.get("loader") or {}
        trainer = lc.get("trainer") or {}
        collate = dict(lc.get("collate") or {})
        if collate.get("kernel_size") is not None:
            logger.warning("lightly.collate.kernel_size is deprecated in lightly and ignored")
        return cls(
            model=embedding.model_config(
                m.get("name", "resnet-18"), m.get("width", 1.0), m.get("num_ftrs", 32), m.get("out_dim", 128)
            ),
            temperature=float(crit.get("temperature", 0.5)),
            memory_bank_size=int(crit.get("memory_bank_size", 0)),
            lr=float(opt.get("lr", 1.0)),
            weight_decay=float(opt.get("weight_decay", 1e-5)),
            collate={k: collate[k] for k in COLLATE_KEYS if k in collate},
            batch_size=int(loader.get("batch_size", 16)),
            shuffle=bool(loader.get("shuffle", True)),
            num_workers=int(loader.get("num_workers", -1)),
            drop_last=bool(loader.get("drop_last", True)),
            max_epochs=int(trainer.get("max_epochs", 100)),
            precision=trainer.get("precision", 32),
            accelerator=trainer.get("accelerator"),
            devices=trainer.get("devices"),
            gpus=trainer.get("gpus"),
            enable_model_summary=bool(trainer.get("enable_model_summary", True)),
            summary_max_depth=int((lc.get("summary_callback") or {}).get("max_depth", 1)),
            save_top_k=int((lc.get("checkpoint_callback") or {}).get("save_top_k", 1)),
            seed=int(lc.get("seed", 1)),
            checkpoint=str(config.get("checkpoint") or ""),
            pre_trained=bool(lc.get("pre_trained", True)),
            max_pixels=int(config.get("max_image_pixels", image.DEFAULT_MAX_PIXELS)),
        )

    def fingerprint(self, files: filelist.FileList) -> str:
        """What a resumable checkpoint must have been trained with.

        Everything but the epoch budget, the loader's worker count and the summary display.
        """
        keep = asdict(self)
        for k in ("max_epochs", "num_workers", "enable_model_summary", "summary_max_depth", "save_top_k"):
            keep.pop(k)
        h = hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode())
        h.update(files.root.encode())
        for name in files.names:
            h.update(b"\0" + name.encode())
        return h.hexdigest()[:32]


def resolve_trainer(s: TrainSettings, cuda_available: bool | None = None) -> dict[str, Any]:
    """Lightning 2 ``Trainer`` arguments for the settings: one device, the GPU when present.

    Lightning 1 / lightly keys are mapped: ``gpus: 0`` means the CPU, ``gpus: 1`` (lightly's default)
    the GPU when there is one; ``precision: 16`` becomes ``"16-mixed"`` on a GPU and falls back to
    32-bit on the CPU (with a warning), where fp16 autocast does not exist.
    """
    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    gpus = single_device_count(s.gpus, "lightly.trainer.gpus")
    single_device_count(s.devices, "lightly.trainer.devices")
    acc = str(s.accelerator).lower() if s.accelerator not in (None, "") else "auto"
    if acc not in ACCELERATORS:
        raise ConfigError(
            "lightly.trainer.accelerator", f"got {s.accelerator!r}; allowed: {', '.join(ACCELERATORS)}"
        )
    if acc in ("gpu", "cuda"):
        if not cuda:
            raise KurateError(
                f"lightly.trainer.accelerator={s.accelerator} but no CUDA GPU is visible to this task; "
                "use accelerator=auto (the GPU when present, else the CPU) or cpu"
            )
        use_gpu = True
    elif acc == "cpu":
        use_gpu = False
    else:
        use_gpu = cuda and gpus != 0
        if gpus == 1 and not cuda:
            logger.info("lightly.trainer.gpus=1 but no CUDA GPU is visible: training on the CPU")
    precision = normalise_precision(s.precision)
    if not use_gpu and precision in PRECISIONS_GPU_ONLY:
        logger.warning(
            "lightly.trainer.precision=%s needs a GPU (fp16); training on the CPU in 32-bit instead",
            s.precision,
        )
        precision = "32-true"
    return {"accelerator": "gpu" if use_gpu else "cpu", "devices": 1, "precision": precision}


# --------------------------------------------------------------------------- data


def _seed_of(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy's SeedSequence)."""
    return int(
        np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1
    )


class _EpochSampler(torch.utils.data.Sampler):
    """Yields ``(index, epoch)``; the order is a pure function of ``(seed, epoch)``.

    With :class:`_ViewsDataset` seeding each batch's augmentations from ``(seed, epoch, its first
    image)``, an epoch's batches do not depend on what ran before: a resumed run trains on exactly the
    batches the interrupted one would have, whatever the loader's worker count. Lightning calls
    :meth:`set_epoch`.
    """

    def __init__(self, n: int, seed: int, shuffle: bool) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(_seed_of(self.seed, self.epoch, 0x5EED))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        epoch = self.epoch
        return iter([(i, epoch) for i in order])


@dataclass
class _Sources:
    """Where each row of the list is read from: its file, or the scratch copy of a video frame."""

    uris: list[str]
    unusable: dict[int, str] = field(default_factory=dict)  # row -> why it cannot be trained on

    @classmethod
    def of_images(cls, files: filelist.FileList) -> _Sources:
        return cls([filelist.sample_uri(files.root, n) for n in files.names])


def frame_side_cap(input_size: int) -> int:
    """Longest side of a video frame's scratch copy: ample for SimCLR's crops at ``input_size``."""
    return max(8 * int(input_size), 512)


@contextlib.contextmanager
def _frames_on_disk(files: filelist.FileList, input_size: int, max_pixels: int) -> Iterator[_Sources]:
    """Sources for ``files``; listed video frames are decoded once into a scratch folder (removed after).

    Training visits every sample once per epoch in a shuffled order, so decoding a video front to back per
    sample would be quadratic: each video is decoded once here instead (one pass, only its listed frames,
    stopping after the last), and each frame is kept as a PNG whose longer side is at most
    :func:`frame_side_cap` (the random crops are then resized to ``input_size`` anyway).
    """
    src = _Sources.of_images(files)
    rows = [r for r, vid in enumerate(files.columns.get("video") or []) if vid]
    if not rows:
        yield src
        return
    from PIL import Image

    cap = frame_side_cap(input_size)
    scratch = tempfile.mkdtemp(prefix="kurate-train-frames-")
    try:
        t0 = time.perf_counter()
        for row, img, reason in samples.iter_samples(files, rows, max_pixels):
            if img is None:
                src.unusable[row] = reason
                continue
            if max(img.size) > cap:
                img.thumbnail((cap, cap), Image.Resampling.BILINEAR)
            path = os.path.join(scratch, f"{row:010d}.png")
            img.save(path, compress_level=1)
            src.uris[row] = path
        logger.info("decoded %d video frame(s) for training in %.1f s", len(rows), time.perf_counter() - t0)
        yield src
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _ViewsDataset(torch.utils.data.Dataset):
    """Items ``(view0, view1, name, "")``; for an image that cannot be decoded ``(None, None, name, reason)``.

    Indexed by ``(index, epoch)`` (see :class:`_EpochSampler`) and fetched a batch at a time
    (``__getitems__``, one worker per batch): the batch's random views are drawn with the global RNGs
    seeded from ``(seed, epoch, first index of the batch)``, and the RNGs are restored afterwards.
    """

    def __init__(
        self,
        files: filelist.FileList,
        transform: Any,
        max_pixels: int,
        seed: int,
        sources: _Sources | None = None,
    ) -> None:
        self.names = list(files.names)
        src = sources if sources is not None else _Sources.of_images(files)
        self.uris, self.unusable = src.uris, src.unusable
        self.transform = transform
        self.max_pixels = max_pixels
        self.seed = seed

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Any, Any, str, str]:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[tuple[Any, Any, str, str]]:
        seed = _seed_of(self.seed, keys[0][1], keys[0][0])
        np_state, py_state = np.random.get_state(), random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed also queues CUDA seeding
            np.random.seed(seed % 2**32)
            random.seed(seed)
            try:
                return [self._views(index) for index, _ in keys]
            finally:
                np.random.set_state(np_state)
                random.setstate(py_state)

    def _views(self, index: int) -> tuple[Any, Any, str, str]:
        name = self.names[index]
        if index in self.unusable:
            return None, None, name, self.unusable[index]
        try:
            img = image.load_image(self.uris[index], name, self.max_pixels)
        except CorruptFileError as exc:
            return None, None, name, exc.reason
        except OSError as exc:
            return None, None, name, f"cannot read file: {exc.strerror or exc}"
        v0, v1 = self.transform(img)  # torchvision draws from torch's RNG, lightly's blur from numpy's
        return v0, v1, name, ""


def _collate(batch: list[tuple[Any, Any, str, str]]) -> tuple[Any, Any, list[tuple[str, str]]]:
    """Stack the two views of the decodable images; list the others (name, reason)."""
    ok = [b for b in batch if b[3] == ""]
    failed = [(b[2], b[3]) for b in batch if b[3] != ""]
    if not ok:
        return None, None, failed
    return torch.stack([b[0] for b in ok]), torch.stack([b[1] for b in ok]), failed


def build_transform(collate: dict[str, Any]) -> Any:
    """Lightly's ``SimCLRTransform`` with the ``lightly.collate.*`` values (lightly-ssl-train's views)."""
    from lightly.transforms import SimCLRTransform

    kwargs = dict(collate)
    if "sigmas" in kwargs and kwargs["sigmas"] is not None:
        kwargs["sigmas"] = tuple(float(v) for v in kwargs["sigmas"])
    if isinstance(kwargs.get("rr_degrees"), list):
        kwargs["rr_degrees"] = tuple(float(v) for v in kwargs["rr_degrees"])
    return SimCLRTransform(**kwargs)


# --------------------------------------------------------------------------- Lightning pieces


class SimCLRModule(pl.LightningModule):
    """lightly-ssl-train's ``SelfSupervisedEmbedding``: ``model`` + NT-Xent + SGD (same state keys)."""

    def __init__(self, model: embedding.LightlyCLIModel, s: TrainSettings, fingerprint: str) -> None:
        from lightly.loss import NTXentLoss

        super().__init__()
        self.model = model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # an int memory_bank_size, as lightly's CLI
            self.criterion = NTXentLoss(temperature=s.temperature, memory_bank_size=s.memory_bank_size)
        self.settings = s
        self.fingerprint = fingerprint
        self.failed: dict[str, str] = {}
        #: where training started and each finished epoch's mean loss, across resumes (in the checkpoints)
        self.started_from = ""
        self.losses: list[float] = []

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        """NT-Xent of the two views' projections; a batch of undecodable images is skipped."""
        x0, x1, failed = batch
        self.failed.update(failed)
        if x0 is None:
            return None  # every image of the batch failed to decode: skip the step
        # Two passes, as lightly's _SimCLR.forward(x0, x1): batch-norm statistics per view.
        loss = self.criterion(self.model(x0), self.model(x1))
        self.log("loss", loss, prog_bar=True, batch_size=int(x0.shape[0]))
        return loss

    def configure_optimizers(self) -> Any:
        """SGD with ``lr`` and ``weight_decay``, as lightly's CLI."""
        return torch.optim.SGD(
            self.model.parameters(), lr=self.settings.lr, weight_decay=self.settings.weight_decay
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record what the checkpoint can be resumed with (settings fingerprint) and skipped files."""
        checkpoint["kurate"] = {
            "format": embedding.CHECKPOINT_FORMAT,
            "model": dict(self.settings.model),
            "fingerprint": self.fingerprint,
            "failed": dict(self.failed),
            "started_from": self.started_from,
            "losses": list(self.losses),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Carry the interrupted run's skipped files, start and epoch losses over.

        So a resumed run reports what an uninterrupted one would.
        """
        k = checkpoint.get("kurate") or {}
        self.failed.update(k.get("failed") or {})
        self.started_from = str(k.get("started_from") or self.started_from)
        self.losses = [float(v) for v in k.get("losses") or []]


class _Throughput(pl.Callback):
    """Per-epoch images, time, images/s and mean loss (logged, kept in ``epochs``, shown live in the bar)."""

    def __init__(self, max_epochs: int) -> None:
        self.max_epochs = max_epochs
        self.epochs: list[dict[str, Any]] = []
        self.t0 = 0.0
        self.images = 0
        self.loss_sum = 0.0

    def rate(self) -> float:
        dt = time.perf_counter() - self.t0
        return self.images / dt if dt > 0 else 0.0

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.t0, self.images, self.loss_sum = time.perf_counter(), 0, 0.0

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if batch[0] is None:
            return
        n = int(batch[0].shape[0])
        self.images += n
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.loss_sum += float(loss.detach()) * n

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        seconds = time.perf_counter() - self.t0
        rec = {
            "epoch": int(trainer.current_epoch),
            "images": self.images,
            "seconds": seconds,
            "images_per_second": self.images / seconds if seconds > 0 else 0.0,
            "loss": self.loss_sum / self.images if self.images else float("nan"),
        }
        self.epochs.append(rec)
        if isinstance(getattr(pl_module, "losses", None), list):
            pl_module.losses.append(rec["loss"])
        logger.info(
            "epoch %d/%d: loss %.4f, %.1f images/s (%d images in %.1f s)",
            rec["epoch"] + 1,
            self.max_epochs,
            rec["loss"],
            rec["images_per_second"],
            rec["images"],
            seconds,
        )


class _Bar(TQDMProgressBar):
    """Lightning's bar, on stderr like the embed phase's, with the running images/s and no logger version."""

    def __init__(self, throughput: _Throughput) -> None:
        super().__init__()
        self.throughput = throughput

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        items["img/s"] = f"{self.throughput.rate():.1f}"
        return items

    def init_train_tqdm(self) -> Any:
        return Tqdm(
            desc=self.train_description,
            position=(2 * self.process_position),
            disable=self.is_disabled,
            leave=True,
            dynamic_ncols=True,
            file=sys.stderr,
            smoothing=0,
            bar_format=self.BAR_FORMAT,
        )


class _AtomicCheckpointIO(TorchCheckpointIO):
    """Epoch checkpoints, written atomically (a kill never leaves half a file).

    Copied to ``mirror_dir`` (a bucket) when set; read back with ``weights_only=True`` (the folder is
    user-writable).
    """

    def __init__(self, mirror_dir: str = "") -> None:
        super().__init__()
        self.mirror_dir = mirror_dir

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with storage.atomic_writer(str(path), "wb") as fh:
            torch.save(checkpoint, fh)
        if self.mirror_dir and os.path.basename(str(path)) == LAST_CKPT:
            storage.write_bytes(storage.join(self.mirror_dir, LAST_CKPT), storage.read_bytes(str(path)))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: Any = None) -> Any:
        return torch.load(str(path), map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- resume


def _read_resumable(path: str, fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it can be resumed with these settings, else None (with the reason)."""
    if not os.path.isfile(path):
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file means: start afresh
        logger.warning("ignoring unreadable training checkpoint %s (%s); training from the start", path, exc)
        return None
    k = ckpt.get("kurate") if isinstance(ckpt, dict) else None
    if not isinstance(k, dict) or k.get("fingerprint") != fingerprint:
        logger.warning(
            "the training checkpoint %s was made with other settings or input; training from the start", path
        )
        return None
    return ckpt


def _ours(name: str) -> bool:
    return name == LAST_CKPT or bool(EPOCH_CKPT_RE.match(name))


def _clear_checkpoints(directory: str, stale_only: bool = False) -> None:
    """Remove our previous checkpoint files, or only the temp files a killed write left behind.

    Only ours: the folder may be the user's ``dirpath``.
    """
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        tmp = name.startswith(".tmp-") and _ours(name.rsplit("-", 1)[-1])
        if tmp or (not stale_only and _ours(name)):
            storage.remove_tree(os.path.join(directory, name))  # a crash point, like every durable change


@contextlib.contextmanager
def _local_checkpoint_dir(checkpoint_dir: str, mirror: bool) -> Iterator[tuple[str, bool]]:
    """A local folder for Lightning's epoch checkpoints: ``(folder, mirrored)``.

    ``checkpoint_dir`` itself, or with ``mirror`` (a bucket URI) a scratch folder seeded from
    ``checkpoint_dir/last.ckpt`` and mirrored back to it through :mod:`kurate.io.storage`.
    """
    if checkpoint_dir and not mirror:
        os.makedirs(checkpoint_dir, exist_ok=True)
        yield checkpoint_dir, False
        return
    scratch = tempfile.mkdtemp(prefix="kurate-train-")
    try:
        if checkpoint_dir:
            remote_last = storage.join(checkpoint_dir, LAST_CKPT)
            if storage.exists(remote_last):
                storage.write_bytes(os.path.join(scratch, LAST_CKPT), storage.read_bytes(remote_last))
        yield scratch, bool(checkpoint_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    model: embedding.LightlyCLIModel
    start_source: str  # the weights training started from
    start_epoch: int  # 0, or the epoch a rerun resumed from
    max_epochs: int
    epochs: list[dict[str, Any]]  # one record per epoch trained in this call
    failed: list[tuple[str, str]]
    device: str
    precision: str
    seconds: float
    losses: list[float] = field(default_factory=list)  # every epoch's mean loss, earlier attempts too

    @property
    def images_per_second(self) -> float:
        """Mean training throughput over the epochs of this call."""
        images = sum(e["images"] for e in self.epochs)
        secs = sum(e["seconds"] for e in self.epochs)
        return images / secs if secs > 0 else 0.0

    @property
    def final_loss(self) -> float:
        """Mean loss of the last epoch trained (by this call or, resumed, an earlier one; nan if none)."""
        if self.losses:
            return float(self.losses[-1])
        return float(self.epochs[-1]["loss"]) if self.epochs else float("nan")


def _start_model(s: TrainSettings) -> tuple[embedding.LightlyCLIModel, str]:
    """The initial weights, as lightly-ssl-train: ``checkpoint``, else the local zoo file, else random."""
    model = embedding._seeded_model(s.model, s.seed)
    if s.checkpoint:
        return model, embedding.load_weights(model, s.checkpoint)
    if s.pre_trained:
        path, _ = embedding.find_pretrained(s.model)
        if path:
            embedding.load_weights(model, path)
            return model, f"lightly model zoo {embedding.zoo_key(s.model)} ({path})"
    return model, f"random initialisation (seed {s.seed})"


def train(
    files: filelist.FileList,
    settings: TrainSettings,
    checkpoint_dir: str = "",
    *,
    progress: bool = True,
    cuda_available: bool | None = None,
    mirror: bool | None = None,
) -> TrainResult:
    """Train on ``files``; epoch checkpoints go to ``checkpoint_dir`` (resumed from when it holds one).

    Without ``checkpoint_dir`` a scratch folder is used (no resume). ``mirror`` (default: when
    ``checkpoint_dir`` is a bucket URI): Lightning writes to a local scratch folder and ``last.ckpt`` is
    copied to ``checkpoint_dir`` after every epoch, so a task on another machine can resume.
    """
    s = settings
    if len(files.names) < 2:
        raise KurateError(f"training needs at least 2 images, got {len(files.names)}")
    if s.batch_size < 1:
        raise ConfigError("lightly.loader.batch_size", f"must be >= 1, got {s.batch_size}")
    trainer_kwargs = resolve_trainer(s, cuda_available)
    fingerprint = s.fingerprint(files)
    t_start = time.perf_counter()

    if mirror is None:
        mirror = storage.is_remote(checkpoint_dir)
    with contextlib.ExitStack() as stack:
        ckpt_dir, mirrored = stack.enter_context(_local_checkpoint_dir(checkpoint_dir, mirror))
        last = os.path.join(ckpt_dir, LAST_CKPT)
        resumable = _read_resumable(last, fingerprint)
        _clear_checkpoints(ckpt_dir, stale_only=resumable is not None)
        start_epoch = int(resumable["epoch"]) + 1 if resumable is not None else 0

        # No global seeding: the initialisation, the batch order and every augmentation are drawn from
        # generators seeded by ``seed`` (and epoch and image), which is what makes resuming exact.
        if resumable is not None:  # the weights come from last.ckpt
            model = embedding._seeded_model(s.model, s.seed)
            source = f"resumed from {last} (epoch {start_epoch} of {s.max_epochs})"
            logger.info("resuming training from %s: %d epoch(s) done", last, start_epoch)
        else:
            model, source = _start_model(s)
        module = SimCLRModule(model, s, fingerprint)
        module.started_from = source  # a resumed fit reads the first attempt's from the checkpoint
        workers = embedding.resolve_num_workers(s.num_workers)
        sources = stack.enter_context(
            _frames_on_disk(files, int(s.collate.get("input_size", 64)), s.max_pixels)
        )
        sampler = _EpochSampler(len(files.names), s.seed, s.shuffle)
        # A resumed fit may start the loader's workers (which prefetch at once) before Lightning's
        # set_epoch: the first epoch must not be drawn with epoch 0's order and augmentations.
        sampler.set_epoch(start_epoch)
        loader = torch.utils.data.DataLoader(
            _ViewsDataset(files, build_transform(s.collate), s.max_pixels, s.seed, sources),
            batch_size=min(s.batch_size, len(files.names)),  # as lightly: never zero batches
            sampler=sampler,
            drop_last=s.drop_last,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=trainer_kwargs["accelerator"] == "gpu",
        )
        throughput = _Throughput(s.max_epochs)
        bar = _Bar(throughput)
        best_cb = ModelCheckpoint(  # lightly's: the best epoch(s) by loss
            dirpath=ckpt_dir,
            filename="lightly_epoch_{epoch:d}",
            save_top_k=s.save_top_k,
            monitor="loss",
            auto_insert_metric_name=False,
            enable_version_counter=False,
        )
        # last.ckpt after every epoch, whatever the loss did: what a rerun resumes from. (Lightning 2.6's
        # save_last only follows the top-k saves, so a worse epoch would leave an older last.ckpt.)
        last_cb = ModelCheckpoint(
            dirpath=ckpt_dir,
            filename=LAST_CKPT.removesuffix(".ckpt"),
            save_top_k=1,
            monitor=None,
            enable_version_counter=False,
        )
        callbacks: list[Any] = [throughput, best_cb, last_cb] + ([bar] if progress else [])
        if s.enable_model_summary:
            callbacks.append(ModelSummary(max_depth=s.summary_max_depth))
        if trainer_kwargs["accelerator"] == "gpu":
            torch.backends.cudnn.benchmark = True
        with warnings.catch_warnings():
            for pattern in (
                ".*does not have many workers.*",
                ".*smaller than the logging interval.*",
                ".*Checkpoint directory .* exists and is not empty.*",
                ".*isinstance.treespec, LeafSpec.*",
            ):
                warnings.filterwarnings("ignore", message=pattern)
            trainer = pl.Trainer(
                max_epochs=s.max_epochs,
                logger=False,  # no lightning_logs/ in the working directory
                default_root_dir=ckpt_dir,
                callbacks=callbacks,
                enable_model_summary=s.enable_model_summary,
                enable_progress_bar=progress,
                num_sanity_val_steps=0,
                plugins=[_AtomicCheckpointIO(checkpoint_dir if mirrored else "")],
                **trainer_kwargs,
            )
            trainer.fit(module, train_dataloaders=loader, ckpt_path=last if resumable is not None else None)

    model = module.model.to("cpu").eval()
    failed = sorted(module.failed.items())
    if failed:
        logger.warning(
            "%d image(s) could not be decoded and were left out of training, e.g. %s", len(failed), failed[:3]
        )
    return TrainResult(
        model=model,
        start_source=module.started_from or source,
        start_epoch=start_epoch,
        max_epochs=s.max_epochs,
        epochs=throughput.epochs,
        losses=list(module.losses),
        failed=failed,
        device=str(trainer_kwargs["accelerator"]),
        precision=str(trainer_kwargs["precision"]),
        seconds=time.perf_counter() - t_start,
    )


# --------------------------------------------------------------------------- outputs


def checkpoint_payload(result: TrainResult, settings: TrainSettings) -> dict[str, Any]:
    """The trained model as a lightly-ssl-train style checkpoint, plus kurate's settings.

    ``state_dict`` has lightly's ``model.`` keys: readable by ``lightly-embed checkpoint=`` and by
    kurate's ``checkpoint=``.
    """
    state = {f"model.{k}": v.detach().to("cpu").clone() for k, v in result.model.state_dict().items()}
    done = result.start_epoch + len(result.epochs)
    return {
        "state_dict": state,
        "epoch": max(done - 1, 0),
        "kurate": {
            "format": embedding.CHECKPOINT_FORMAT,
            "model": dict(settings.model),
            "epochs": done,
            "seed": settings.seed,
        },
    }


def write_checkpoint(uri: str, payload: dict[str, Any]) -> None:
    """Write a checkpoint payload atomically (any storage URI)."""
    with storage.atomic_writer(uri, "wb") as fh:
        torch.save(payload, fh)
