"""The GPU paths, checked and measured on a CUDA machine: embed, train and pretag on the GPU vs the CPU.

Usage (on a machine with a CUDA GPU): ``python bench/cuda_bench.py [--out bench/results-cuda.md]``.
Not part of ``make bench`` (which runs where there may be no GPU, and would overwrite these figures with
nothing); without CUDA it says so and exits 0.

Each section compares the GPU with a named baseline measured in the same run: the same library call on
the CPU (embed, pretag), lightly's own CLI training on the same GPU (train), and the random-initialised
model training starts from (the structure-group margin).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.helpers: the generated datasets the tests use
sys.path.insert(0, str(HERE))


def _files(root: Path, n_per_group: int, size: int, n_colours: int = 0) -> Any:
    from kurate.io.filelist import FileList
    from tests.helpers import make_structure_folder

    labels = make_structure_folder(root, n_per_group=n_per_group, size=size, seed=0, n_colours=n_colours)
    names = sorted(labels)
    return FileList(str(root), names), np.array([labels[n] for n in names])


def embed_section(tmp: Path, workers: int) -> list[str]:
    """Same files, same (seeded random) resnet-18, CPU vs GPU: the embeddings agree, and the speed."""
    from kurate.models import embedding

    files, _ = _files(tmp / "embed", n_per_group=512, size=96)
    common = {
        "model_name": "resnet-18",
        "num_ftrs": 32,
        "out_dim": 128,
        "input_size": 64,
        "batch_size": 256,
        "num_workers": workers,
        "pre_trained": False,
        "seed": 1,
        "progress": False,
    }
    runs = {}
    for dev in ("cpu", "cuda", "cuda"):  # the second GPU run is the warm one
        t0 = time.perf_counter()
        r = embedding.embed_files(files, device=dev, **common)
        runs[dev] = (r, time.perf_counter() - t0)
    (cpu, t_cpu), (gpu, t_gpu) = runs["cpu"], runs["cuda"]
    assert cpu.names == gpu.names == files.names and gpu.device == "cuda", (gpu.device, len(gpu.names))
    diff = float(np.abs(cpu.embeddings - gpu.embeddings).max())
    scale = float(np.abs(cpu.embeddings).max())
    cos = np.sum(cpu.embeddings * gpu.embeddings, 1) / (
        np.linalg.norm(cpu.embeddings, axis=1) * np.linalg.norm(gpu.embeddings, axis=1)
    )
    return [
        "## Embed: GPU vs CPU (`kurate.models.embedding.embed_files`)",
        "",
        f"{len(files)} generated 96 px PNGs, resnet-18 (num_ftrs 32, seeded random init), input 64,"
        f" batch 256, {workers} loader workers; the same call with `device=cpu` is the baseline.",
        "",
        "| device | images/s | compute efficiency | wall s |",
        "|---|---|---|---|",
        f"| cpu | {cpu.images_per_second:.0f} | {cpu.compute_efficiency:.2f} | {t_cpu:.1f} |",
        f"| cuda | {gpu.images_per_second:.0f} | {gpu.compute_efficiency:.2f} | {t_gpu:.1f} |",
        "",
        f"Speed-up {gpu.images_per_second / cpu.images_per_second:.1f}x. Agreement: max |cpu - gpu| ="
        f" {diff:.2e} (largest value {scale:.2f}), min cosine similarity {float(cos.min()):.6f}. A compute"
        " efficiency well below 1 on the GPU means the loader (decoding) sets the pace, not the model.",
        "",
    ]


def margin_section(tmp: Path) -> list[str]:
    """The margin test's measurement (train, then embed) with training and embedding on the GPU."""
    import torch

    from kurate.models import training
    from tests.unit.models import test_training_margin as margin

    files, y = _files(tmp / "margin", n_per_group=40, size=24, n_colours=1)  # the test's data
    rows = []
    for seed in (1, 2, 3, 4):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = margin.measure(files, y, seed, tmp / f"m{seed}")
        rows.append(
            f"| {seed} | {m['knn_before']:.3f} → **{m['knn_after']:.3f}** | {m['sil_before']:.3f} → "
            f"**{m['sil_after']:.3f}** | {m['loss_first']:.3f} → {m['loss_last']:.3f} |"
        )
    device = training.resolve_trainer(training.TrainSettings())["accelerator"]
    return [
        "## Training does something, on the GPU (the margin test's measurement)",
        "",
        "160 structure-group images (4 groups, one palette), "
        f"`tests/unit/models/test_training_margin.measure`: {margin.EPOCHS} epochs on `{device}`"
        f" ({torch.cuda.get_device_name(0)}), then embed on the GPU."
        " Baseline: the random-initialised model training starts from.",
        "",
        "| seed | kNN accuracy before → after | silhouette before → after | loss first → last epoch |",
        "|---|---|---|---|",
        *rows,
        "",
        f"The CPU test asserts gains of at least {margin.MIN_KNN_GAIN} (kNN) and {margin.MIN_SILHOUETTE_GAIN}"
        " (silhouette).",
        "",
    ]


def round_trip_section(tmp: Path) -> list[str]:
    """train on the GPU → model artifact / checkpoint_latest.ckpt → embed; fp16-mixed; resume on the GPU."""
    import torch

    from kurate.io import embeddings_io, filelist
    from kurate.models import model_io, training
    from kurate.phases.embed import run_embed
    from kurate.phases.train import run_train

    files, _ = _files(tmp / "rt", n_per_group=64, size=48)
    clean = str(tmp / "rt-clean")
    filelist.write(clean, files)
    lightly = {
        "model": {"name": "resnet-18", "num_ftrs": 32, "out_dim": 128},
        "collate": {"input_size": 32},
        "loader": {"batch_size": 64, "num_workers": 4},
        "trainer": {"max_epochs": 2, "enable_model_summary": False},
        "pre_trained": False,
        "seed": 3,
    }
    out: list[str] = ["## Train → checkpoint → embed on the GPU", ""]
    for precision in (32, 16):
        lc = {**lightly, "trainer": {**lightly["trainer"], "precision": precision}}
        latest = str(tmp / f"rt{precision}" / "checkpoint_latest.ckpt")
        cfg = {
            "enable_training": True,
            "lightly": lc,
            "checkpoint_dir": str(tmp / f"rt{precision}" / "checkpoints"),
            "checkpoint_out": latest,
        }
        meta = run_train(clean, str(tmp / f"model{precision}"), cfg)
        emb = {"lightly": {k: lc[k] for k in ("model", "collate", "loader")}}
        run_embed(clean, str(tmp / f"e1-{precision}"), emb, model_in=str(tmp / f"model{precision}"))
        run_embed(clean, str(tmp / f"e2-{precision}"), {**emb, "checkpoint": latest})
        _, x1, m1 = embeddings_io.read_embeddings(str(tmp / f"e1-{precision}"))
        _, x2, _ = embeddings_io.read_embeddings(str(tmp / f"e2-{precision}"))
        ckpt, _ = model_io.read(str(tmp / f"model{precision}"))
        cpu_state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
        out.append(
            f"- precision {precision}: trained on `{meta['device']}` in `{meta['precision']}`,"
            f" {meta['epochs']} epochs, {meta['images_per_second']:.0f} img/s, final loss"
            f" {meta['final_loss']:.3f}; embed via the model artifact vs `checkpoint=checkpoint_latest.ckpt`:"
            f" max |Δ| = {float(np.abs(x1 - x2).max()):.1e} (embed device {m1['device']}); the checkpoint"
            f" loads on the CPU ({len(cpu_state)} tensors, all finite:"
            f" {all(bool(torch.isfinite(v).all()) for v in cpu_state.values() if v.is_floating_point())})."
        )
    # resume on the GPU: 2 epochs, then the same command with max_epochs=3 continues from epoch 2
    s2 = training.TrainSettings.from_config({"lightly": lightly})
    s3 = training.TrainSettings.from_config(
        {"lightly": {**lightly, "trainer": {**lightly["trainer"], "max_epochs": 3}}}
    )
    training.train(files, s2, str(tmp / "resume"), progress=False)
    resumed = training.train(files, s3, str(tmp / "resume"), progress=False)
    straight = training.train(files, s3, str(tmp / "straight"), progress=False)
    a = resumed.model.state_dict()
    b = straight.model.state_dict()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point())
    out += [
        f"- resume on the GPU: a 2-epoch run continued to 3 epochs (resumed from epoch {resumed.start_epoch},"
        f" {len(resumed.epochs)} epoch trained) vs 3 epochs straight: largest weight difference {worst:.1e}"
        + (" (identical)." if worst == 0 else " (cuDNN kernels need not be bit-reproducible run to run)."),
        "",
    ]
    return out


def train_section(workers: int) -> list[str]:
    """kurate's training vs lightly's CLI training on the same GPU (train_bench's comparison)."""
    import train_bench

    train_bench.WORKERS = workers
    p = {
        "n_per_group": 256,
        "image": 96,
        "input_size": 64,
        "model": ("resnet-18", 1.0),
        "batch": 128,
        "epochs": 4,
    }
    lines = train_bench._section("resnet-18 on the GPU", p, rounds=2)
    return ["## Training throughput on the GPU: kurate vs lightly-ssl-train", "", *lines]


def pretag_section(tmp: Path, workers: int) -> list[str]:
    """The detector over the same images on the CPU and the GPU: the same objects, and the speed."""
    from kurate.io.filelist import FileList
    from kurate.models import detection, pretag
    from tests.detector_helpers import CATEGORIES, make_shapes_folder, train_tiny_detector

    ckpt = str(tmp / "det.pt")
    detection.save_detector(ckpt, train_tiny_detector(n_images=160, epochs=10), "fcos_tiny", CATEGORIES)
    rng = np.random.default_rng(5)
    layouts = [[int(k) for k in rng.integers(1, 3, size=int(rng.integers(0, 4)))] for _ in range(1024)]
    root = tmp / "shapes"
    make_shapes_folder(root, layouts, seed=11)
    files = FileList(str(root), sorted(os.listdir(root)))
    # the settings file a user writes, read and validated as the plan does
    (tmp / "pretag.yaml").write_text(
        f"source: model\narchitecture: fcos_tiny\ncheckpoint: {ckpt}\n"
        f"categories: [{', '.join(CATEGORIES)}]\nscore_threshold: 0.3\nbatch_size: 64\n"
        f"num_workers: {workers}\n"
    )
    base = pretag.load_settings(str(tmp / "pretag.yaml"))
    res = {}
    for dev in ("cpu", "cuda", "cuda"):
        t0 = time.perf_counter()
        preds, facts = detection.predict_files(files, {**base, "device": dev}, progress=False)
        res[dev] = (preds, time.perf_counter() - t0)
    (pc, tc), (pg, tg) = res["cpu"], res["cuda"]
    same_count = sum(len(a) == len(b) for a, b in zip(pc, pg, strict=True))

    def order(preds: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(preds, key=lambda p: (p["category_id"], p["bbox"]))

    box_diffs = [
        max(abs(u - v) for u, v in zip(pa["bbox"], pb["bbox"], strict=True))
        for a, b in zip(pc, pg, strict=True)
        if len(a) == len(b)
        for pa, pb in zip(order(a), order(b), strict=True)
    ]
    objects = sum(len(a) for a in pc)
    return [
        "## Pretag: the detector on the GPU vs the CPU (`kurate.models.detection.predict_files`)",
        "",
        f"{len(files)} generated shape images, `fcos_tiny` trained in this run, batch 64, {workers} workers.",
        "",
        "| device | images/s | objects found |",
        "|---|---|---|",
        f"| cpu | {len(files) / tc:.0f} | {objects} |",
        f"| cuda | {len(files) / tg:.0f} | {sum(len(b) for b in pg)} |",
        "",
        f"Same number of objects in {same_count}/{len(files)} images; largest box-coordinate difference where"
        f" they match {max(box_diffs) if box_diffs else 0.0:.2e} px.",
        "",
    ]


def video_section(tmp: Path, workers: int) -> list[str]:
    """Video frames on the GPU: embedded (CPU vs GPU agree) and trained on (decoded once into scratch)."""
    from kurate.io import filelist
    from kurate.models import embedding, training
    from kurate.phases.ingest import run_ingest
    from tests.helpers import make_structure_folder
    from tests.video_helpers import make_video

    root = tmp / "video-in"
    make_structure_folder(root, n_per_group=8, size=96, seed=2)
    for i in range(4):
        make_video(root / "clips" / f"cam{i}.mp4", n=120, size=(160, 120), seed=i)
    run_ingest(str(tmp / "video-files"), {"input_dir": str(root)})
    files = filelist.read(str(tmp / "video-files"))
    frames = sum(1 for v in files.columns["video"] if v)
    common = {
        "model_name": "resnet-18",
        "input_size": 64,
        "batch_size": 128,
        "num_workers": workers,
        "pre_trained": False,
        "seed": 1,
        "progress": False,
    }
    cpu = embedding.embed_files(files, device="cpu", **common)
    gpu = embedding.embed_files(files, device="cuda", **common)
    assert cpu.names == gpu.names == files.names and not gpu.failed
    diff = float(np.abs(cpu.embeddings - gpu.embeddings).max())
    settings = training.TrainSettings.from_config(
        {
            "lightly": {
                "model": {"name": "resnet-18"},
                "collate": {"input_size": 64},
                "loader": {"batch_size": 64, "num_workers": workers, "drop_last": False},
                "trainer": {"max_epochs": 2, "enable_model_summary": False},
                "pre_trained": False,
            }
        }
    )
    result = training.train(files, settings, str(tmp / "video-ck"), progress=False)
    return [
        "## Video frames on the GPU (embed, train)",
        "",
        f"{len(files)} samples: 32 images and {frames} frames of 4 H.264 clips (160x120), listed by ingest.",
        f"- embed: {len(gpu.names)} rows on {gpu.device} at {gpu.images_per_second:.0f} img/s vs"
        f" {cpu.images_per_second:.0f} img/s on the CPU (baseline), max |cpu - gpu| = {diff:.2e}.",
        f"- train: {result.device}, {result.precision}, epochs of {[e['images'] for e in result.epochs]}"
        f" images ({len(result.failed)} failed), {result.images_per_second:.0f} img/s.",
        "",
    ]


#: (N, d, picks) of the coreset comparison: lightly's default 32 dimensions at 1M and 10M rows, and 128.
CORESET_SIZES = ((1_000_000, 32, 500), (10_000_000, 32, 200), (2_000_000, 128, 300))


def coreset_section() -> list[str]:
    """The coreset's greedy steps on the GPU vs numpy on this machine's CPU: time per pick and agreement."""
    import torch

    from kurate.selection.coreset import coreset_with_info

    rows = []
    rng = np.random.default_rng(0)
    warm = rng.standard_normal((1000, 8), dtype=np.float32)
    coreset_with_info(warm, n_samples=5, device="cuda")  # CUDA context and kernels, outside the timing
    for n, d, k in CORESET_SIZES:
        x = rng.standard_normal((n, d), dtype=np.float32)
        t0 = time.perf_counter()
        cpu = coreset_with_info(x, n_samples=k)
        t_cpu = time.perf_counter() - t0
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        gpu = coreset_with_info(x, n_samples=k, device="cuda")
        t_gpu = time.perf_counter() - t0
        a, b = cpu.indices.tolist(), gpu.indices.tolist()
        same = next((i for i, (u, v) in enumerate(zip(a, b, strict=True)) if u != v), len(a))
        dd = (
            float(np.nanmax(np.abs(cpu.pick_distances[1:same] - gpu.pick_distances[1:same])))
            if same > 1
            else 0
        )
        rows.append(
            f"| {n:,} x {d} | {k} | {1000 * t_cpu / k:.2f} | {1000 * t_gpu / k:.3f} | {t_cpu / t_gpu:.0f}x |"
            f" {same}/{k} | {dd:.1e} |"
        )
        del x
    return [
        "## Coreset: the greedy steps on the GPU vs numpy on the CPU "
        "(`kurate.selection.coreset.coreset_with_info`)",
        "",
        f"Random float32 embeddings; numpy on this machine's {os.cpu_count()} cores (its BLAS threads) is the"
        " baseline. Times are whole calls divided by the picks: the start (centroid, numpy on both) and, on"
        " the GPU, copying the embeddings to GPU memory are included.",
        "",
        "| embeddings | picks | numpy ms/pick | cuda ms/pick | speed-up | same picks (leading) |"
        " max distance diff |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def run(workers: int, only: set[str] | None = None) -> str:
    import torch

    if not torch.cuda.is_available():
        return "# CUDA checks\n\nNo CUDA device on this machine: nothing measured (run on a GPU machine).\n"
    head = [
        "# CUDA checks (`python bench/cuda_bench.py`)",
        "",
        f"- GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__} (CUDA {torch.version.cuda});"
        f" {os.cpu_count()} CPU cores; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
    ]
    body: list[str] = []
    timings = {}
    with tempfile.TemporaryDirectory(prefix="kurate-cuda-bench-") as t:
        tmp = Path(t)
        for name, fn in (
            ("embed", lambda: embed_section(tmp, workers)),
            ("round trip", lambda: round_trip_section(tmp)),
            ("pretag", lambda: pretag_section(tmp, workers)),
            ("video", lambda: video_section(tmp, workers)),
            ("coreset", coreset_section),
            ("margin", lambda: margin_section(tmp)),
            ("train", lambda: train_section(workers)),
        ):
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            try:
                body += fn()
            except Exception as exc:  # report and go on: one broken path must not hide the others
                import traceback

                body += [f"## {name}: FAILED", "", "```", traceback.format_exc()[-3000:], "```", ""]
                print(f"{name} failed: {exc!r}", file=sys.stderr)
            timings[name] = time.perf_counter() - t0
            print(f"{name}: {timings[name]:.0f} s", file=sys.stderr, flush=True)
    tail = ["Section times: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()), ""]
    return "\n".join(head + body + tail)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(HERE / "results-cuda.md"))
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--only", default="", help="sections: embed,round trip,pretag,video,coreset,margin,train")
    a = ap.parse_args(argv)
    text = run(a.workers, {x.strip() for x in a.only.split(",") if x.strip()} or None)
    Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
