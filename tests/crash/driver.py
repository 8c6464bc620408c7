"""The crash-point walk, run as its own process: ``python -m tests.crash.driver SPEC.json RESULT.json``.

1. An uninterrupted run with ``KURATE_CRASH_TRACE`` records every crash point it hits (the durable
   writes, see :mod:`kurate.crash`) and is the reference snapshot.
2. For each chosen point k: a run with ``KURATE_CRASH_AT=k KURATE_CRASH_KILL=run`` dies (SIGKILL, the
   command and its task together) just before that write lands; the same command is run again
   without the switch; its snapshot must equal the reference (:mod:`tests.crash.compare`).

The runs are the real ``kurate`` command with kfp.local's tasks forked from this warm process
(:mod:`tests.crash.harness`). SPEC: ``{"args": [...], "workdir": DIR, "select": "sites"|"all",
"prepare": DIR or null}`` (``prepare``: copied into the output folder before every run, e.g. a
datapool made by an earlier run). The output folder is the same path for every run (outputs name
their own location), emptied in between.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from tests.crash import compare, harness


def read_trace(path: Path) -> list[dict[str, str]]:
    """The points of a trace file, in the order they were hit."""
    points = []
    if not path.exists():
        return points
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        n, pid, site, target, stack = (line.split("\t") + [""] * 5)[:5]
        points.append({"n": n, "pid": pid, "site": site, "target": target, "stack": stack})
    return points


def kind(target: str) -> str:
    """A point's file kind: its base name with numbers and ids blurred (img_003.png ~ img_007.png)."""
    base = target.rstrip("/").rsplit("/", 1)[-1]
    base = re.sub(r"^\.tmp-[^-]*-", "", base)
    return re.sub(r"[0-9a-f]{6,}|\d+", "#", base)


def choose(points: list[dict[str, str]], select: str) -> list[int]:
    """1-based indices to kill at: ``all`` points, the first of each ``sites`` (the function that
    writes), or the first of each ``kinds`` (site and file kind), or ``none``."""
    if select == "all":
        return list(range(1, len(points) + 1))
    if select == "none":
        return []
    seen: set[tuple[str, str]] = set()
    ks = []
    for i, p in enumerate(points, start=1):
        key = (p["site"], kind(p["target"]) if select == "kinds" else "")
        if key not in seen:
            seen.add(key)
            ks.append(i)
    return ks


def _fresh(out: Path, prepare: str | None) -> None:
    if out.exists():
        shutil.rmtree(out)
    if prepare:
        shutil.copytree(prepare, out, symlinks=True)
    else:
        out.mkdir(parents=True)


def walk(spec: dict[str, Any]) -> dict[str, Any]:
    work = Path(spec["workdir"])
    out = work / "out"
    args = [*spec["args"], f"output_dir={out}"]
    harness.warm_up()
    harness.env_without_crash()
    t0 = time.time()
    _fresh(out, spec.get("prepare"))
    trace = work / "reference.trace"
    code = harness.run_kurate(args, {"KURATE_CRASH_TRACE": str(trace)}, str(work / "reference.log"))
    if code != 0:
        return {"error": f"the uninterrupted run failed with {code}; see {work / 'reference.log'}"}
    reference = compare.snapshot(out)
    points = read_trace(trace)
    ks = (
        [int(k) for k in spec["points"]]
        if spec.get("points")
        else choose(points, spec.get("select", "sites"))
    )
    skip = set(spec.get("skip_sites") or ())
    ks = [k for k in ks if points[k - 1]["site"] not in skip]
    result: dict[str, Any] = {
        "points": len(points),
        "sites": sorted({p["site"] for p in points}),
        "trace": points,
        "walked": [],
        "failures": [],
        "reference_seconds": round(time.time() - t0, 1),
    }
    for k in ks:
        p = points[k - 1]
        _fresh(out, spec.get("prepare"))
        log = work / f"point-{k}.log"
        env = {
            "KURATE_CRASH_AT": str(k),
            "KURATE_CRASH_KILL": "run",
            "KURATE_CRASH_TRACE": str(work / f"point-{k}.trace"),
        }
        killed = harness.run_kurate(args, env, str(log))
        entry = {"k": k, "site": p["site"], "target": p["target"], "killed": killed}
        if killed != -9:
            entry["problem"] = f"not killed at point {k} (exit {killed}): the run's points changed"
            result["failures"].append(entry)
            continue
        again = harness.run_kurate(args, {}, str(log))
        entry["rerun"] = again
        got = compare.snapshot(out)
        diffs = compare.differences(reference, got)
        if again != 0 and not (again == 2 and (out / "r" / "report.json").exists()):
            diffs.insert(0, f"the rerun exited {again}; see {log}")
        if diffs:
            entry["diffs"] = diffs
            result["failures"].append(entry)
        else:
            log.unlink(missing_ok=True)
        result["walked"].append(entry)
    result["seconds"] = round(time.time() - t0, 1)
    return result


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    result = walk(spec)
    Path(argv[1]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    sys.exit(main(sys.argv[1:]))
