"""Run every registered benchmark and write one markdown report.

Usage: python bench/run.py [--quick] [--out PATH] [--only NAME[,NAME...]]

Each module in BENCHES lives in this directory and exposes ``run() -> str`` returning a markdown
section; if its ``run`` accepts a ``quick`` keyword it gets ``quick=True`` under ``--quick``.
The full run writes bench/results.md; ``--quick`` (smoke test, small sizes) writes
bench/results-quick.md so a smoke run never overwrites the real numbers. ``--only`` runs the named
modules and puts their sections into the existing report in place (a section is the text from its
``## `` heading to the next module's), keeping every other section as it was measured.
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
    "selection_bench",
    "metadata_bench",
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


def _merge(report: str, new: dict[str, str]) -> str:
    """``report`` with the sections of the modules in ``new`` replaced (or added at the end).

    A section is found by its first ``## `` heading line; it runs to the next ``## `` heading that
    starts another module's section (a module's own ``## `` sub-headings stay with it).
    """
    lines = report.splitlines(keepends=True)
    cursor = None  # new sections go after the ones this call placed, in the order given
    load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "?"
    where = f"{_cpu_model()}, {os.cpu_count()} logical cores, load average {load}"
    for _name, section in new.items():
        heads = [ln for ln in section.splitlines(keepends=True) if ln.startswith("## ")]
        first = heads[0] if heads else ""
        own = set(heads)
        start = next((i for i, ln in enumerate(lines) if ln == first), None)
        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        stamp = f"<!-- measured {when} on {where} (bench/run.py --only; other sections: see above) -->\n"
        block = [stamp, *section.splitlines(keepends=True), "\n"]
        if start is None:  # a new section: before the first existing one (after the machine facts)
            if cursor is None:
                cursor = next(
                    (i for i, ln in enumerate(lines) if ln.startswith(("## ", "<!-- "))), len(lines)
                )
            lines[cursor:cursor] = block
            cursor += len(block)
            continue
        if start > 0 and lines[start - 1].startswith("<!-- measured "):
            start -= 1
        end = start + 1
        while end < len(lines) and not (lines[end].startswith("## ") and lines[end] not in own):
            end += 1
        lines[start:end] = block
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for smoke testing")
    parser.add_argument("--out", type=Path, default=None, help="report path")
    parser.add_argument("--only", default="", help="comma-separated modules; merged into the report")
    args = parser.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(only) - set(BENCHES))
    if unknown:
        parser.error(f"unknown bench module(s): {', '.join(unknown)}")
    out = args.out or HERE / ("results-quick.md" if args.quick else "results.md")

    sys.path.insert(0, str(HERE))
    sections = []
    for name in only or BENCHES:
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        section = _call(name, args.quick)
        print(f"[bench] {name} done in {time.perf_counter() - t0:.1f} s", flush=True)
        print(section, flush=True)
        sections.append(section.rstrip() + "\n")

    title = "# kurate benchmarks" + (" (quick smoke run)" if args.quick else "")
    if only and out.is_file():
        report = _merge(out.read_text(), dict(zip(only, sections, strict=True)))
    else:
        report = f"{title}\n\n{machine_info()}\n\n" + "\n".join(sections)
    out.write_text(report)
    print(f"[bench] wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
