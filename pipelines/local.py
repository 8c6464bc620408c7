"""Run the curation pipeline on this machine through kfp.local (the same DAG the clusters run)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from typing import Any

from kurate.plan import TASKS, RunPlan

log = logging.getLogger("kurate.local")


def pipeline_arguments(plan: RunPlan, embed_shards: int | None = None) -> dict[str, Any]:
    """The pipeline's parameters for ``plan``: one JSON string of keys per task (and the shard count)."""
    args: dict[str, Any] = {f"{t}_config": json.dumps(plan.task_configs[t], sort_keys=True) for t in TASKS}
    if embed_shards is not None:
        args["embed_shards"] = int(embed_shards)
    return args


def run_local(plan: RunPlan, keep_work: bool = False, embed_shards: int = 1) -> None:
    """Execute every task with kfp.local's SubprocessRunner in this Python environment.

    ``embed_shards`` > 1 runs the sharded embedding (ParallelFor + merge) exactly as a cluster does,
    the shards one after another.

    kfp.local's scratch (pipeline_root) is the run's own ``.work`` folder, removed after success
    unless ``keep_work``; its workspace_root (which kfp.local deletes) is left to kfp's own temp dir.
    kfp.local handles only local artifact paths, so when the run directory is in a bucket
    (``plan.work_dir`` empty) the scratch is a local temporary folder instead: the artifacts between
    phases stay on this machine, the input is read from and the outputs written to the buckets.
    """
    from kfp import local

    from kurate.pipelines.curation import build_pipeline

    work_dir = plan.work_dir or tempfile.mkdtemp(prefix="kurate-work-")
    os.makedirs(work_dir, exist_ok=True)
    if not plan.work_dir:
        log.info("intermediate artifacts in %s (the outputs go to %s)", work_dir, plan.run_dir)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=work_dir, raise_on_error=True)
    with warnings.catch_warnings():
        # The components name their cluster images; locally they run in this environment on purpose.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        build_pipeline(target="local")(**pipeline_arguments(plan, embed_shards))
    if not keep_work:
        shutil.rmtree(work_dir, ignore_errors=True)
