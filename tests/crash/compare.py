"""What "ends exactly as an uninterrupted run" means, as a comparison of two output folders.

A snapshot holds every durable result of a run folder and its datapool: the file lists, the
embeddings CSVs, dumped images, the selection in report.json, the datapool's versions, states,
derived files and samples. Volatile parts are normalised away: durations, cache statistics, random
tokens, the time and id in a state folder's name. The embedding cache is not compared (a killed
run may leave extra chunks), but nothing anywhere may be a leftover temp file, lock or ``.work``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

VOLATILE_REPORT = {"phase_durations_s", "worker_id", "kurate_version", "statistics_seconds"}
VOLATILE_EMBEDDING = {
    "images_per_second",
    "compute_efficiency",
    "computed",
    "cache_hits",
    "device",
    "backend",  # how this attempt computed (none at all when a rerun found every row in the cache)
    "seconds",
    "embedding_cache",
}
_STATE_DIR = re.compile(r"^(\d{8})_.*$")


def _norm_report(data: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in data.items() if k not in VOLATILE_REPORT}
    data["phases"] = sorted(data.get("phases") or {})  # which phases ran, not when
    if isinstance(data.get("statistics"), dict):
        data["statistics"] = {k: v for k, v in data["statistics"].items() if k != "seconds"}
    prov = dict(data.get("provenance") or {})
    for k in ("created_utc", "images_per_second", "compute_efficiency", "device"):
        prov.pop(k, None)
    data["provenance"] = prov
    emb = dict(data.get("embedding") or {})
    for k in VOLATILE_EMBEDDING:
        emb.pop(k, None)
    if isinstance(emb.get("training"), dict):
        emb["training"] = {
            k: v
            for k, v in emb["training"].items()
            if k
            not in ("seconds", "images_per_second", "resumed_from_epoch", "epochs_this_run")  # this attempt's
        }
    data["embedding"] = emb
    if isinstance(data.get("datapool"), dict):
        data["datapool"] = {k: v for k, v in data["datapool"].items() if k != "state"}
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ckpt_digest(path: Path) -> str:
    """Weights only: a checkpoint's tensors, not Lightning's bookkeeping."""
    import torch

    raw = torch.load(path, map_location="cpu", weights_only=False)
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k]
        h.update(k.encode())
        if hasattr(v, "numpy"):
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def snapshot(out: Path) -> dict[str, Any]:
    """Comparable content of every durable file under ``out`` (a run folder's parent)."""
    snap: dict[str, Any] = {}
    problems: list[str] = []
    for dirpath, dirnames, filenames in os.walk(out):
        here = Path(dirpath)
        rel_dir = here.relative_to(out)
        for d in list(dirnames):
            if d == ".work":
                problems.append(f"leftover {rel_dir / d}")
        for name in filenames:
            path = here / name
            rel = str(path.relative_to(out))
            if name.startswith(".tmp-"):
                problems.append(f"leftover temp file {rel}")
                continue
            parts = rel.split(os.sep)
            if parts[0] == ".kurate-cache" or (
                len(parts) > 3 and parts[0] == "datapool" and parts[2] == "cache"
            ):
                continue  # the embedding cache may hold extra chunks of killed attempts
            if name == "kurate.log":
                continue
            if parts[-2:] == [".kurate", "lock.json"]:
                problems.append(f"leftover lock {rel}")
                continue
            key = "/".join(_STATE_DIR.sub(r"\1", p) for p in parts)
            if parts[-2:] == [".kurate", "run.json"]:
                snap[key] = json.loads(path.read_text())["settings"]
            elif name == "report.json":
                snap[key] = _norm_report(json.loads(path.read_text()))
            elif parts[-2:-1] == ["versions"] or (name == "meta.json" and "history" in parts):
                data = json.loads(path.read_text())
                snap[key] = {
                    k: v
                    for k, v in data.items()
                    if k not in ("state", "time_utc", "run_token", "run_id", "created")
                }
            elif name.endswith(".ckpt"):
                snap[key] = _ckpt_digest(path)
            elif name == "report.html":
                snap[key] = "present" if path.stat().st_size else "empty"
            else:
                snap[key] = _digest(path)
    snap["__problems__"] = sorted(problems)
    return snap


def _subdiff(key: str, e: Any, g: Any, depth: int = 0) -> str:
    """Where two values differ, down to the leaves (short)."""
    if isinstance(e, dict) and isinstance(g, dict) and depth < 4:
        keys = sorted(k for k in set(e) | set(g) if e.get(k) != g.get(k))
        return "; ".join(_subdiff(f"{key}.{k}", e.get(k), g.get(k), depth + 1) for k in keys[:6])
    return f"{key}: {str(e)[:120]!r} != {str(g)[:120]!r}"


def differences(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Human-readable differences (empty: the same)."""
    out: list[str] = []
    for key in sorted(set(expected) | set(got)):
        if key not in got:
            out.append(f"missing {key}")
        elif key not in expected:
            out.append(f"extra {key}" + (f": {got[key]}" if key == "__problems__" else ""))
        elif expected[key] != got[key]:
            e, g = expected[key], got[key]
            if isinstance(e, dict) and isinstance(g, dict):
                keys = sorted(k for k in set(e) | set(g) if e.get(k) != g.get(k))
                out.append(f"differs {key}: " + "; ".join(_subdiff(k, e.get(k), g.get(k)) for k in keys[:10]))
            else:
                out.append(f"differs {key}: {str(e)[:200]} != {str(g)[:200]}")
    return out
