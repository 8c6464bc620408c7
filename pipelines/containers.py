"""Run the whole pipeline on this machine with every task in its own phase image.

Two ways, both with ``--network=none`` (nothing is fetched at run time), the input mounted read-only and
each image's own non-root user:

- ``docker``: ``kfp.local.DockerRunner`` (the KFP-native way) over the engine's Docker API (``DOCKER_HOST``;
  Podman's ``podman system service`` serves it too): each task's container runs the component's own
  command in the image ``kurate.images`` names, the pipeline root mounted at its own path.
- ``argo``: the compiled Argo workflow (``make compile``'s YAML) walked by :mod:`kurate.pipelines.argo_local`,
  each step run with the engine CLI in the image the YAML names, with the command and args the YAML holds;
  artifacts move through a mounted per-step folder at ``/tmp/kurate``.

The data folders the task configs name (input, output, datapool, checkpoint, ...) are mounted at the same
paths, so the configs are used unchanged. Run by root (CI, a server), the tasks run as the image's own user
(uid 10001), as on a cluster: ``output_dir`` must be writable for it (as a volume with ``fsGroup`` is), and
the run folder this process created is handed to it. Run by another user, the tasks run as that user's
uid:gid (still non-root), so that the outputs are theirs.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from kurate.errors import ConfigError, PhaseFailedError
from kurate.pipelines.argo_local import ContainerSteps, Mount, StepFailed, run_workflow
from kurate.plan import RunPlan

#: ``KURATE_RUNNER`` values that run the tasks in containers.
RUNNERS = ("docker", "argo")
#: The user kurate's images run as (images/Dockerfile).
IMAGE_UID = 10001


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)]) == os.path.abspath(folder)


def data_mounts(plan: RunPlan) -> list[Mount]:
    """The host paths the tasks read or write, to mount at the same paths: input read-only, output rw.

    Any other existing absolute path a task config names (a checkpoint, an embeddings file, a pretagging
    config, a datapool elsewhere) is mounted too: read-only, except a datapool (written by export).
    Buckets cannot be reached from a container without network: refused.
    """
    ingest = plan.task_configs["ingest"]
    export = plan.task_configs["export"]
    input_dir, output_dir = str(ingest["input_dir"]), str(export["output_dir"])
    for key, value in (("input_dir", input_dir), ("output_dir", output_dir)):
        if "://" in value:
            raise ConfigError(key, f"{value}: the container runners run without network; use a local folder")
    mounts = [Mount(input_dir, read_only=True), Mount(output_dir, read_only=False)]
    pool = (export.get("datapool") or {}).get("location") or ""
    if pool and "://" not in pool and not _inside(pool, output_dir):
        os.makedirs(pool, exist_ok=True)
        mounts.append(Mount(pool, read_only=False))
    for text in sorted(set(_strings(plan.task_configs))):
        if not text.startswith("/") or "\n" in text or not os.path.exists(text):
            continue
        if any(_inside(text, m.path) for m in mounts):
            continue
        mounts.append(Mount(text, read_only=True))
    return mounts


def task_user(plan: RunPlan, mounts: Sequence[Mount]) -> str:
    """``--user`` for the tasks: '' (the image's own) when this process is root, else this process's uid:gid.

    As root, the folders this process created for the run (run folder, kfp scratch, a datapool folder)
    are handed to the image's user.
    """
    if os.geteuid() != 0:
        return f"{os.getuid()}:{os.getgid()}"
    owned = [plan.run_dir, plan.work_dir] + [m.path for m in mounts[2:] if not m.read_only]
    for top in owned:
        if not top or not os.path.isdir(top):
            continue
        os.chown(top, IMAGE_UID, IMAGE_UID)
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), IMAGE_UID, IMAGE_UID)
    return ""


def run_flags() -> list[str]:
    """Extra engine ``run`` flags from env ``CONTAINER_RUN_FLAGS`` (e.g. the ulimits a machine needs)."""
    return shlex.split(os.environ.get("CONTAINER_RUN_FLAGS", ""))


def _ulimits(flags: Sequence[str]) -> list[Any]:
    """``--ulimit name=soft:hard`` flags as docker SDK ``Ulimit`` objects (a flag replaces the default)."""
    import docker

    values = []
    it = iter(flags)
    for flag in it:
        if flag == "--ulimit":
            values.append(next(it, ""))
        elif flag.startswith("--ulimit="):
            values.append(flag.split("=", 1)[1])
    out = []
    for value in filter(None, values):
        name, _, limits = value.partition("=")
        soft, _, hard = limits.partition(":")
        out.append(docker.types.Ulimit(name=name, soft=int(soft), hard=int(hard or soft)))
    return out


def run_kfp_docker(plan: RunPlan, embed_shards: int = 1, keep_work: bool = False) -> None:
    """Every task in its image through ``kfp.local.DockerRunner`` (engine reached at ``DOCKER_HOST``)."""
    import docker
    from kfp import local

    from kurate.pipelines.curation import build_pipeline
    from kurate.pipelines.local import pipeline_arguments

    wanted = data_mounts(plan)
    mounts = [
        docker.types.Mount(target=m.path, source=m.path, type="bind", read_only=m.read_only) for m in wanted
    ]
    work_dir = plan.work_dir  # inside the local run folder (data_mounts refuses buckets)
    os.makedirs(work_dir, exist_ok=True)
    from kurate.phases import _entry
    from kurate.pipelines.local import ERROR_RECORD, task_failure

    record = os.path.join(work_dir, ERROR_RECORD)  # the pipeline root is mounted at its own path
    with contextlib.suppress(FileNotFoundError):
        os.unlink(record)
    args: dict[str, Any] = {
        "network_mode": "none",
        "mounts": mounts,
        "ulimits": _ulimits(run_flags()),
        "environment": {_entry.ERROR_FILE_ENV: record},  # a failing phase's class and message, for us
    }
    user = task_user(plan, wanted)
    if user:
        args["user"] = user
    runner = local.DockerRunner(**args)
    local.init(runner=runner, pipeline_root=work_dir, raise_on_error=True)
    with warnings.catch_warnings(), _exit_status_kept():
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        try:
            build_pipeline(target="local")(**pipeline_arguments(plan, embed_shards))
        except RuntimeError as exc:  # a task failed: its phase left the error record
            raise task_failure(record, exc) from None
    if not keep_work:
        from kurate.io import storage

        storage.remove_tree(work_dir)  # inside the run folder: a crash point like every durable change


def run_argo_containers(
    plan: RunPlan, workflow: dict[str, Any], engine: str, embed_shards: int = 1, workdir: str = ""
) -> ContainerSteps:
    """Every step of the compiled Argo ``workflow`` in the image it names; returns what ran."""
    from kurate.pipelines.local import pipeline_arguments

    mounts = data_mounts(plan)
    user = task_user(plan, mounts)
    steps = ContainerSteps(
        engine=engine, mounts=mounts, flags=[*run_flags(), *(["--user", user] if user else [])]
    )
    with tempfile.TemporaryDirectory(prefix="kurate-argo-", dir=workdir or None) as tmp:
        params = {k: str(v) for k, v in pipeline_arguments(plan, embed_shards).items()}
        try:
            run_workflow(workflow, params, Path(tmp), steps=steps)
        except (
            StepFailed
        ) as exc:  # a step's `python -m` printed its one line and exited with the class's code
            said = [ln for ln in exc.stderr.splitlines() if ln.startswith("kurate: error: ")]
            if not said:
                raise
            raise PhaseFailedError(
                said[-1][len("kurate: error: ") :], exit_code=exc.returncode, detail=exc.stderr
            ) from None
    return steps


@contextlib.contextmanager
def _exit_status_kept() -> Iterator[None]:
    """Keep a task container's exit status (kfp.local's DockerRunner loses a failing one).

    kfp 2.17 starts each container with ``auto_remove=True`` and counts a container already removed
    when its status is read as exit 0, so a failing task reports SUCCESS (kubeflow/pipelines#13332).
    While this is active, containers run without auto-remove: the status is read, then the container
    removed. Images are never pulled (no network at run time: build them).
    """
    import docker
    from kfp.local import docker_task_handler as handler

    def run(client: Any, image: str, command: list[str], volumes: dict[str, Any], **args: Any) -> int:
        image = handler.add_latest_tag_if_not_present(image)
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            raise ConfigError("image", f"{image} is not on this machine; build it: make images") from None
        container = client.containers.run(
            image=image, command=command, detach=True, stdout=True, stderr=True, volumes=volumes, **args
        )
        try:
            for line in container.logs(stream=True, follow=True):
                print(line.decode(errors="replace"), end="")
            return int(container.wait()["StatusCode"])
        finally:
            container.remove(force=True)

    original = handler.run_docker_container
    handler.run_docker_container = run
    try:
        yield
    finally:
        handler.run_docker_container = original


def container_engine() -> str:
    """Env ``CONTAINER_ENGINE``, else the first of docker/podman on PATH."""
    import shutil

    name = os.environ.get("CONTAINER_ENGINE") or shutil.which("docker") or shutil.which("podman") or ""
    if not name:
        raise ConfigError("CONTAINER_ENGINE", "no container engine found; install docker or podman")
    return name


def run_in_containers(plan: RunPlan, runner: str, embed_shards: int = 1, keep_work: bool = False) -> None:
    """``KURATE_RUNNER=docker|argo`` (read by the ``kurate`` command): every task of ``plan`` in its image."""
    if runner == "docker":
        run_kfp_docker(plan, embed_shards=embed_shards, keep_work=keep_work)
    elif runner == "argo":
        from kurate.pipelines.argo import workflow_dict

        run_argo_containers(plan, workflow_dict(kind="Workflow"), container_engine(), embed_shards)
    else:
        raise ConfigError("KURATE_RUNNER", f"got {runner!r}; allowed: subprocess, docker, argo")
