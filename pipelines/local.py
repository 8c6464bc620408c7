"""Run the curation pipeline on this machine through kfp.local (the same DAG the clusters run)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings

from kurate.plan import TASKS, RunPlan

log = logging.getLogger("kurate.local")


def pipeline_arguments(plan: RunPlan) -> dict[str, str]:
    """The pipeline's parameters for ``plan``: one JSON string of keys per task."""
    return {f"{t}_config": json.dumps(plan.task_configs[t], sort_keys=True) for t in TASKS}


def run_local(plan: RunPlan, keep_work: bool = False) -> None:
    """Execute every task with kfp.local's SubprocessRunner in this Python environment.

    kfp.local's scratch (pipeline_root) is the run's own ``.work`` folder, removed after success
    unless ``keep_work``; its workspace_root (which kfp.local deletes) is left to kfp's own temp dir.
    kfp.local handles only local artifact paths, so when the run directory is in a bucket
    (``plan.work_dir`` empty) the scratch is a local temporary folder instead: the artifacts between
    phases stay on this machine, the input is read from and the outputs written to the buckets.
    """
    from kfp import local

    from kurate.pipelines.curation import curation_pipeline

    work_dir = plan.work_dir or tempfile.mkdtemp(prefix="kurate-work-")
    os.makedirs(work_dir, exist_ok=True)
    if not plan.work_dir:
        log.info("intermediate artifacts in %s (the outputs go to %s)", work_dir, plan.run_dir)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=work_dir, raise_on_error=True)
    with warnings.catch_warnings():
        # The components name their cluster images; locally they run in this environment on purpose.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        curation_pipeline(**pipeline_arguments(plan))
    if not keep_work:
        shutil.rmtree(work_dir, ignore_errors=True)
