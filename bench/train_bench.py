"""Training benchmark: kurate's train phase vs lightly's own CLI training (``lightly-ssl-train``).

Both train the same model (lightly's CLI SimCLR: ResNetGenerator backbone + SimCLRProjectionHead,
NT-Xent, SGD) on the same generated images with the same input size, batch size, loader workers,
epochs and seed, in this process, one after the other. lightly's CLI is run through its own code
(``lightly.cli.train_cli._train_cli``, what the ``lightly-ssl-train`` console script calls); its
per-epoch times come from hooks added to its LightningModule class for the duration of the run, the
same hooks (epoch start / end, images per batch) kurate records. The first epoch includes the loader
start-up; the steady figure is the median over the other epochs.
"""

from __future__ import annotations

import importlib
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

QUICK = {"n_per_group": 24, "image": 48, "input_size": 32, "model": ("resnet-9", 0.25), "batch": 32, "epochs": 3}
FULL = {"n_per_group": 64, "image": 96, "input_size": 64, "model": ("resnet-18", 1.0), "batch": 64, "epochs": 4}
WORKERS = 2


def _dataset(root: Path, p: dict[str, Any]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.helpers import make_structure_folder

    make_structure_folder(root, n_per_group=p["n_per_group"], size=p["image"], seed=0)


def _run_kurate(root: Path, work: Path, p: dict[str, Any]) -> tuple[list[dict[str, Any]], float]:
    from kurate import training
    from kurate.filelist import FileList

    name, width = p["model"]
    settings = training.TrainSettings(
        model={"name": name, "width": width, "num_ftrs": 32, "out_dim": 128},
        collate={"input_size": p["input_size"]},
        batch_size=p["batch"],
        num_workers=WORKERS,
        max_epochs=p["epochs"],
        enable_model_summary=False,
        pre_trained=False,
        seed=1,
    )
    files = FileList(str(root), sorted(os.listdir(root)))
    t0 = time.perf_counter()
    result = training.train(files, settings, str(work / "kurate_ckpt"), progress=False)
    return result.epochs, time.perf_counter() - t0


def _run_lightly(root: Path, work: Path, p: dict[str, Any]) -> tuple[list[dict[str, Any]], float]:
    from omegaconf import OmegaConf

    train_cli = importlib.import_module("lightly.cli.train_cli")
    from lightly.embedding.embedding import SelfSupervisedEmbedding

    cfg = OmegaConf.to_container(
        OmegaConf.load(os.path.join(os.path.dirname(train_cli.__file__), "config", "config.yaml"))
    )
    cfg.pop("hydra")
    name, width = p["model"]
    cfg.update(input_dir=str(root), pre_trained=False, seed=1)
    cfg["model"].update(name=name, width=width, num_ftrs=32, out_dim=128)
    cfg["collate"]["input_size"] = p["input_size"]
    cfg["loader"].update(batch_size=p["batch"], num_workers=WORKERS)
    cfg["trainer"].update(max_epochs=p["epochs"], enable_model_summary=False, enable_progress_bar=False)
    cfg["checkpoint_callback"]["dirpath"] = str(work / "lightly_ckpt")

    epochs: list[dict[str, Any]] = []
    state = {"t0": 0.0, "images": 0}

    def start(self: Any) -> None:
        state.update(t0=time.perf_counter(), images=0)

    def batch_end(self: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        state["images"] += int(batch[0][0].shape[0])

    def end(self: Any) -> None:
        dt = time.perf_counter() - state["t0"]
        epochs.append({"images": state["images"], "seconds": dt, "images_per_second": state["images"] / dt})

    hooks = {"on_train_epoch_start": start, "on_train_batch_end": batch_end, "on_train_epoch_end": end}
    saved = {k: SelfSupervisedEmbedding.__dict__.get(k) for k in hooks}
    cwd = os.getcwd()
    os.chdir(work)  # lightly's Trainer writes lightning_logs/ into the working directory
    try:
        for k, fn in hooks.items():
            setattr(SelfSupervisedEmbedding, k, fn)
        t0 = time.perf_counter()
        train_cli._train_cli(cfg, is_cli_call=False)
        total = time.perf_counter() - t0
    finally:
        os.chdir(cwd)
        for k, fn in saved.items():
            if fn is None:
                delattr(SelfSupervisedEmbedding, k)
            else:
                setattr(SelfSupervisedEmbedding, k, fn)
    return epochs, total


def _row(tool: str, epochs: list[dict[str, Any]], total: float) -> tuple[str, float]:
    first = epochs[0]["images_per_second"]
    steady = statistics.median(e["images_per_second"] for e in epochs[1:]) if len(epochs) > 1 else first
    per_epoch = ", ".join(f"{e['images_per_second']:.1f}" for e in epochs)
    return f"| {tool} | {first:.1f} | **{steady:.1f}** | {per_epoch} | {total:.1f} |", steady


def run(quick: bool = False) -> str:
    import torch

    p = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="kurate-train-bench-") as tmp:
        tmpdir = Path(tmp)
        root = tmpdir / "images"
        _dataset(root, p)
        n = len(os.listdir(root))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # lightly first, then kurate, then lightly again: the median of the two lightly runs is the
            # baseline, so a machine getting busier or quieter during the run does not favour one side.
            l1 = _run_lightly(root, tmpdir / "l1", p)
            k = _run_kurate(root, tmpdir / "k", p)
            l2 = _run_lightly(root, tmpdir / "l2", p)
    name, width = p["model"]
    device = "cuda (" + torch.cuda.get_device_name(0) + ")" if torch.cuda.is_available() else "cpu"
    k_row, k_steady = _row("kurate train phase (`kurate.training.train`)", *k)
    l1_row, l1_steady = _row("lightly CLI (`lightly-ssl-train` code), run 1", *l1)
    l2_row, l2_steady = _row("lightly CLI, run 2", *l2)
    base = (l1_steady + l2_steady) / 2
    lines = [
        "## Training throughput: kurate vs lightly-ssl-train",
        "",
        f"{n} generated {p['image']}px PNGs (4 structure groups), {name} width {width}, num_ftrs 32, out_dim 128,"
        f" input size {p['input_size']}, batch {p['batch']} (drop_last), {WORKERS} loader workers,"
        f" {p['epochs']} epochs, seed 1, on {device}, torch {torch.__version__}. Images/s = images trained"
        " per epoch / epoch wall time (loading, augmentation, forward, backward, step; checkpoint writing"
        " excluded for both).",
        "",
        "| trainer | epoch 1 img/s | steady img/s (median of epochs 2+) | per epoch | total s (incl. start-up) |",
        "|---|---|---|---|---|",
        l1_row,
        k_row,
        l2_row,
        "",
        f"kurate / lightly CLI (steady, mean of the two lightly runs): **{k_steady / base:.2f}x**.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
