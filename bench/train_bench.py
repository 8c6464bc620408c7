"""Training benchmark: kurate's train phase vs lightly's own CLI training (``lightly-ssl-train``).

Both train the same model (lightly's CLI SimCLR: ResNetGenerator backbone + SimCLRProjectionHead,
NT-Xent, SGD) on the same generated images with the same input size, batch size, loader workers,
epochs and seed, in this process, one after the other. lightly's CLI is run through its own code
(``lightly.cli.train_cli._train_cli``, what the ``lightly-ssl-train`` console script calls); its
per-epoch times come from hooks added to its LightningModule class for the duration of the run, the
same hooks (epoch start / end, images per batch) kurate records. The first epoch includes the loader
start-up; the steady figure is the median over the other epochs. The two alternate (lightly, kurate,
lightly, kurate) and the comparison uses each one's best run, as the machine may be shared.
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

#: (label, settings): a small model, where loading and augmentation set the pace, and lightly's default
#: resnet-18, where the network does.
FULL = [
    (
        "small model (data-pipeline bound)",
        {
            "n_per_group": 128,
            "image": 64,
            "input_size": 32,
            "model": ("resnet-9", 0.25),
            "batch": 64,
            "epochs": 3,
        },
    ),
    (
        "resnet-18 (compute bound)",
        {
            "n_per_group": 32,
            "image": 64,
            "input_size": 32,
            "model": ("resnet-18", 1.0),
            "batch": 32,
            "epochs": 3,
        },
    ),
]
QUICK = [
    (
        "small model",
        {
            "n_per_group": 24,
            "image": 48,
            "input_size": 32,
            "model": ("resnet-9", 0.25),
            "batch": 32,
            "epochs": 3,
        },
    ),
]
WORKERS = 2


def _dataset(root: Path, p: dict[str, Any]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.helpers import make_structure_folder

    make_structure_folder(root, n_per_group=p["n_per_group"], size=p["image"], seed=0)


def _run_kurate(root: Path, work: Path, p: dict[str, Any]) -> tuple[list[dict[str, Any]], float]:
    from kurate.io.filelist import FileList
    from kurate.models import training

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
    work.mkdir(parents=True, exist_ok=True)
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


def _section(label: str, p: dict[str, Any], rounds: int) -> list[str]:
    import torch

    rows: list[str] = []
    best = {"kurate": 0.0, "lightly": 0.0}
    with tempfile.TemporaryDirectory(prefix="kurate-train-bench-") as tmp:
        tmpdir = Path(tmp)
        root = tmpdir / "images"
        _dataset(root, p)
        n = len(os.listdir(root))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Alternate lightly and kurate, and keep each one's best run: the machine is shared, and a
            # busy spell should not decide the comparison.
            for r in range(1, rounds + 1):
                for tool, fn in (("lightly", _run_lightly), ("kurate", _run_kurate)):
                    epochs, total = fn(root, tmpdir / f"{tool}{r}", p)
                    name = (
                        f"lightly CLI (`lightly-ssl-train` code), run {r}"
                        if tool == "lightly"
                        else f"kurate train phase (`kurate.models.training.train`), run {r}"
                    )
                    row, steady = _row(name, epochs, total)
                    rows.append(row)
                    best[tool] = max(best[tool], steady)
    name, width = p["model"]
    device = "cuda (" + torch.cuda.get_device_name(0) + ")" if torch.cuda.is_available() else "cpu"
    return [
        f"### {label}",
        "",
        f"{n} generated {p['image']}px PNGs (4 structure groups), {name} width {width}, num_ftrs 32, out_dim"
        f" 128, input size {p['input_size']}, batch {p['batch']} (drop_last), {WORKERS} loader workers,"
        f" {p['epochs']} epochs, seed 1, on {device}, torch {torch.__version__}.",
        "",
        "| trainer | epoch 1 img/s | steady img/s (median of epochs 2+) | per epoch | total s |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Best steady run: kurate **{best['kurate']:.1f}** img/s, lightly CLI **{best['lightly']:.1f}**"
        f" img/s: kurate / lightly = **{best['kurate'] / best['lightly']:.2f}x**.",
        "",
    ]


def run(quick: bool = False) -> str:
    lines = [
        "## Training throughput: kurate vs lightly-ssl-train",
        "",
        "Same data, model, input size, batch, workers, epochs and seed; lightly's CLI training code is run in"
        " this process. Images/s = images trained in an epoch / the epoch's wall time (loading, augmentation,"
        " forward, backward, optimizer step; checkpoint writing excluded for both). Total s includes model"
        " building and Trainer start-up.",
        "",
    ]
    for label, p in QUICK if quick else FULL:
        lines += _section(label, p, rounds=1 if quick else 2)
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
