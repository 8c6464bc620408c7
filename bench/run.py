"""Run every registered benchmark and write one markdown report.

Usage: python bench/run.py [--quick] [--out PATH]

Each module in BENCHES lives in this directory and exposes ``run() -> str`` returning a markdown
section; if its ``run`` accepts a ``quick`` keyword it gets ``quick=True`` under ``--quick``.
The full run writes bench/results.md; ``--quick`` (smoke test, small sizes) writes
bench/results-quick.md so a smoke run never overwrites the real numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import os
import platform
import sys
import time
from pathlib import Path

# Registered benchmark modules (file names in bench/, without .py). Add yours here.
BENCHES: list[str] = [
    "pipeline_bench",
    "decode_bench",
    "fixed_cost_bench",
    "damaged_jpeg_bench",
    "coreset_prune_bench",
    "coreset_bench",
    "train_bench",
    "report_bench",
    "video_bench",
    "shard_merge_bench",
    "storage_bench",
    "datapool_bench",
    "pretag_bench",
]

HERE = Path(__file__).resolve().parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    import numpy as np  # noqa: F401  (load numpy's BLAS so threadpoolctl can see it)

    parts = []
    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        parts.append(
            f"{info.get('internal_api')} {info.get('version')} ({info.get('architecture', '?')}, "
            f"{info.get('num_threads')} threads, {Path(info.get('filepath', '')).name})"
        )
    return "; ".join(parts) or "none found"


def machine_info() -> str:
    import numpy as np

    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}
    lines = [
        f"- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical cores",
        f"- Python {platform.python_version()}, numpy {np.__version__}",
        f"- BLAS: {_blas_info()}",
    ]
    if env:
        lines.append("- BLAS env: " + ", ".join(f"`{k}={v}`" for k, v in sorted(env.items())))
    return "\n".join(lines)


def _call(module_name: str, quick: bool) -> str:
    mod = importlib.import_module(module_name)
    params = inspect.signature(mod.run).parameters
    return mod.run(quick=quick) if "quick" in params else mod.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for smoke testing")
    parser.add_argument("--out", type=Path, default=None, help="report path")
    args = parser.parse_args(argv)
    out = args.out or HERE / ("results-quick.md" if args.quick else "results.md")

    sys.path.insert(0, str(HERE))
    sections = []
    for name in BENCHES:
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        section = _call(name, args.quick)
        print(f"[bench] {name} done in {time.perf_counter() - t0:.1f} s", flush=True)
        print(section, flush=True)
        sections.append(section.rstrip() + "\n")

    title = "# kurate benchmarks" + (" (quick smoke run)" if args.quick else "")
    report = f"{title}\n\n{machine_info()}\n\n" + "\n".join(sections)
    out.write_text(report)
    print(f"[bench] wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
