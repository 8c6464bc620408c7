"""Video benchmark: frame-reading speed against Debian's ffmpeg, and memory of a whole run vs video count.

1. Frames/s decoded + resized to the embed input size + converted to RGB, on the same H.264 files:
   kurate's reader (``kurate.media.video``: one PyAV decode pass, swscale resize+convert) against
   ``ffmpeg -i F -vf scale=W:H,format=rgb24 -f null -`` run on each file in turn (process start
   included: it is part of reading a file that way). Two settings: one thread each (decoder and
   scaler), and the embed phase's real reader (``_SampleStream`` in a DataLoader with 2 workers, one
   decoder thread each, producing normalised tensors) against ffmpeg with its default threads.
2. Peak RSS of the whole process tree (the ``kurate`` command, kfp.local's task processes, DataLoader
   and check workers; sampled every 50 ms, RSS summed, so shared pages count more than once: an
   upper bound) for a full run over 50 vs 500 short videos. Goal: flat, under 1 GB.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

INPUT_SIZE = 64


def _make_clips(
    folder: Path, count: int, n: int, size: tuple[int, int], codec: str = "libx264"
) -> list[Path]:
    from tests.video_helpers import make_video

    ext = "mp4" if codec != "mjpeg" else "avi"
    return [make_video(folder / f"v{i:04d}.{ext}", codec, n=n, size=size, seed=i) for i in range(count)]


def _ours_single(files: list[Path]) -> tuple[int, float]:
    from kurate.media import video

    frames = 0
    t0 = time.perf_counter()
    for f in files:
        with video.open_video(str(f)) as container:
            for df in video.iter_frames(container, threads=1):
                video.to_rgb(df.frame, (INPUT_SIZE, INPUT_SIZE))
                frames += 1
    return frames, time.perf_counter() - t0


def _ours_pipeline(files: list[Path], workers: int) -> tuple[int, float]:
    import torch

    from kurate.io import filelist
    from kurate.models.embedding import _collate_indexed, _SampleStream
    from kurate.phases.ingest import list_input

    flist = list_input(str(files[0].parent))
    stream = _SampleStream(flist, INPUT_SIZE, 1 << 30, threads=1)
    loader = torch.utils.data.DataLoader(
        stream, batch_size=64, num_workers=workers, collate_fn=_collate_indexed
    )
    frames = 0
    t0 = time.perf_counter()
    for _images, ok, _, _ in loader:
        frames += int(ok.sum())
    assert isinstance(flist, filelist.FileList)
    return frames, time.perf_counter() - t0


def _ffmpeg(files: list[Path], threads: bool) -> float:
    t0 = time.perf_counter()
    for f in files:
        one = ["-threads", "1", "-filter_threads", "1"] if not threads else []
        cmd = ["ffmpeg", "-v", "error", "-nostdin", *one[2:], *one[:2], "-i", str(f),
               "-vf", f"scale={INPUT_SIZE}:{INPUT_SIZE},format=rgb24", "-f", "null", "-"]  # fmt: skip
        subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def _tree_rss(root_pid: int) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in bytes of ``root_pid`` and all its descendants, from /proc.

    PSS splits each shared page among the processes sharing it (forked DataLoader workers share
    torch's pages with their parent), so its sum is what the tree really occupies.
    """
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        p = frontier.pop()
        for c, pp in parent.items():
            if pp == p and c not in tree:
                tree.add(c)
                frontier.append(c)
    rss = pss = 0
    for p in tree:
        try:
            with open(f"/proc/{p}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue
    return rss, pss


def _run_peak(input_dir: Path, out_dir: Path) -> tuple[int, int, float, int]:
    """(peak tree RSS, peak tree PSS in bytes, seconds, exit code) of one ``kurate`` run."""
    kurate = str(Path(sys.executable).with_name("kurate"))
    cmd = [kurate, f"input_dir={input_dir}", f"output_dir={out_dir}", "run_directory=r",
           "stopping_condition.n_samples=0.1", "lightly.collate.input_size=32",
           "lightly.loader.batch_size=64", "lightly.loader.num_workers=2",
           "lightly.model.num_ftrs=16"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = [0, 0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss, pss = _tree_rss(proc.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    rc = proc.wait()
    stop.set()
    th.join()
    return peak[0], peak[1], time.perf_counter() - t0, rc


def run(quick: bool = False) -> str:
    if not shutil.which("ffmpeg"):
        return (
            "## Video reading\n\nskipped: Debian's `ffmpeg` is not installed (`apt-get install -y ffmpeg`).\n"
        )
    tmp = Path(tempfile.mkdtemp(prefix="kurate-video-bench-"))
    try:
        count, n, size = (2, 60, (320, 180)) if quick else (4, 150, (640, 360))
        files = _make_clips(tmp / "speed", count, n, size)
        _ours_single(files[:1])  # warm caches
        _ffmpeg(files[:1], threads=False)
        frames, t_ours1 = _ours_single(files)
        t_ff1 = _ffmpeg(files, threads=False)
        frames_p, t_ours_p = _ours_pipeline(files, workers=2)
        t_ff = _ffmpeg(files, threads=True)
        assert frames == frames_p == count * n

        small, big = (10, 50) if quick else (50, 500)
        rss = {}
        for k in (small, big):
            folder = tmp / f"many{k}"
            _make_clips(folder, k, 10, (64, 48))
            rss[k] = _run_peak(folder, tmp / f"out{k}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def fps(t: float) -> float:
        return frames / t

    lines = [
        "## Video reading (decode + resize to the embed input + RGB)",
        "",
        f"{count} H.264 clips of {n} frames at {size[0]}x{size[1]} (PyAV-encoded, crf 18), resized to "
        f"{INPUT_SIZE}x{INPUT_SIZE}; baseline `ffmpeg -i F -vf scale={INPUT_SIZE}:{INPUT_SIZE},format=rgb24 "
        "-f null -` (Debian's ffmpeg) on the same files, one file after another, in the same run.",
        "",
        "| setting | kurate frames/s | ffmpeg frames/s | ratio (goal >= 0.8) |",
        "|---|---|---|---|",
        f"| one thread each (kurate.media.video reader vs ffmpeg `-threads 1 -filter_threads 1`) "
        f"| {fps(t_ours1):.0f} | {fps(t_ff1):.0f} | {t_ff1 / t_ours1:.2f} |",
        f"| embed's reader: `_SampleStream`, DataLoader 2 workers, normalised tensors vs ffmpeg default "
        f"threads | {fps(t_ours_p):.0f} | {fps(t_ff):.0f} | {t_ff / t_ours_p:.2f} |",
        "",
        "## Memory of a whole run vs number of videos",
        "",
        "Peak memory of the whole `kurate` process tree (the command, kfp.local's task processes, check "
        "and DataLoader workers), sampled every 50 ms from /proc: PSS summed (shared pages split among "
        "their sharers: what the tree occupies) and RSS summed (shared pages counted once per process: "
        "forked workers re-count torch, an upper bound). Videos: 10 frames of 64x48 each (H.264); "
        "embed input 32, 2 workers; the baseline is the same run on fewer videos.",
        "",
        "| videos | frames | peak tree PSS | peak tree RSS (sum) | wall | exit |",
        "|---|---|---|---|---|---|",
    ]
    for k, (prss, ppss, secs, rc) in rss.items():
        lines.append(
            f"| {k} | {k * 10} | {ppss / 2**20:.0f} MiB | {prss / 2**20:.0f} MiB | {secs:.0f} s | {rc} |"
        )
    ratio = rss[big][1] / max(1, rss[small][1])
    lines += ["", f"Peak PSS ratio {big} vs {small} videos: {ratio:.2f} (goal: flat, <= 1 GB)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
