"""Run a compiled Argo Workflow on this machine, the way the Argo controller would, minus Kubernetes.

Reads the YAML (nothing from kurate's Python objects), walks the DAG in dependency order, expands
``withSequence``, substitutes ``{{workflow.*}}``, ``{{inputs.parameters.*}}`` and ``{{item}}``, and runs
each template's exact ``command`` + ``args``. Artifacts move like Argo moves them: an output path is
collected after the step, copied to the consumer's input path before it; key-only artifacts
(``s3.key``/``gcs.key``) go through a local folder standing in for the artifact repository, so the shard
fan-in is exercised through keys exactly as written. Each step has its own pod folder standing in for
``/tmp/kurate``.

Two ways to run a step:

- :class:`HostSteps`: a subprocess of this Python (the pod folder replaces ``/tmp/kurate`` in the args);
  fast, for the compile tests.
- :class:`ContainerSteps`: a container of the image the template names, through a container engine
  (``docker`` or ``podman``) with ``--network=none``, ``--pull=never``, the image's own user (refused when it
  is root and the workflow says ``runAsNonRoot``), the pod folder mounted at ``/tmp/kurate``, a
  memory-backed ``/dev/shm`` volume as ``--shm-size``, and the data folders the configs name mounted at the
  same paths (the input read-only). This is what a cluster does, minus the scheduler.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POD_ROOT = "/tmp/kurate"
_VAR = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")


class StepFailed(RuntimeError):
    """A step exited non-zero (its stderr is in the message), or its artifacts are missing."""

    returncode: int = 1
    stderr: str = ""


@dataclass
class Step:
    """One pod: the task (and item of a fan-out), its image, argv as the YAML holds it, its pod folder."""

    task: str
    item: str | None
    image: str
    argv: list[str]
    pod: Path
    shm_size: str = ""
    non_root: bool = False


@dataclass
class Mount:
    """A host folder (or file) seen at the same path inside the step containers."""

    path: str
    read_only: bool = True


def _subst(text: str, scope: dict[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in scope:
            raise KeyError(f"unresolved Argo variable {{{{{key}}}}}")
        return scope[key]

    return _VAR.sub(repl, text)


def _order(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done: list[str] = []
    pending = {t["name"]: t for t in tasks}
    while pending:
        ready = [n for n, t in pending.items() if all(d in done for d in t.get("dependencies", []))]
        if not ready:
            raise ValueError(f"the DAG has a cycle or a missing dependency among {sorted(pending)}")
        for n in sorted(ready):
            done.append(n)
            pending.pop(n)
    by_name = {t["name"]: t for t in tasks}
    return [by_name[n] for n in done]


def _repo_key(artifact: dict[str, Any]) -> str | None:
    for store in ("s3", "gcs"):
        if store in artifact and "key" in artifact[store]:
            return str(artifact[store]["key"])
    return None


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        shutil.copyfile(src, dst)


def _shm_size(template: dict[str, Any]) -> str:
    """``--shm-size`` value of a memory-backed emptyDir mounted at /dev/shm (``2Gi`` → ``2g``), else ''."""
    mounts = template.get("container", {}).get("volumeMounts", [])
    for vol in template.get("volumes", []):
        empty = vol.get("emptyDir") or {}
        at_shm = any(m["name"] == vol["name"] and m["mountPath"] == "/dev/shm" for m in mounts)
        if at_shm and empty.get("medium") == "Memory":
            size = str(empty.get("sizeLimit", "64Mi"))
            m = re.fullmatch(r"(\d+)([KMGT])i?", size)
            return f"{m.group(1)}{m.group(2).lower()}" if m else size
    return ""


class HostSteps:
    """Run each step as a subprocess of this Python; the pod folder stands in for ``/tmp/kurate``."""

    def __call__(self, step: Step) -> subprocess.CompletedProcess[str]:
        """Run ``step`` here and return the finished process."""
        argv = [
            str(step.pod / a[len(POD_ROOT) + 1 :]) if a.startswith(POD_ROOT + "/") else a for a in step.argv
        ]
        if argv[0] == "python":
            argv[0] = sys.executable
        env = dict(os.environ, HOME=str(step.pod))
        return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=step.pod)


@dataclass
class ContainerSteps:
    """Run each step in its image through a container engine CLI (``docker`` or ``podman``)."""

    engine: str = "podman"
    mounts: Sequence[Mount] = ()
    #: extra ``run`` flags, e.g. the ulimits a machine needs (``--ulimit nofile=...``)
    flags: Sequence[str] = ()
    #: what ran: one record per step (image, user, argv as given to the engine, exit code)
    log: list[dict[str, Any]] = field(default_factory=list)

    def image_user(self, image: str) -> str:
        """The image's configured user (``Config.User``); '' when none is set (root)."""
        proc = subprocess.run(
            [self.engine, "image", "inspect", "--format", "{{.Config.User}}", image],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise StepFailed(f"image {image} is not on this machine (build it: make images): {proc.stderr}")
        return proc.stdout.strip()

    def __call__(self, step: Step) -> subprocess.CompletedProcess[str]:
        """Run ``step`` in ``step.image`` and return the finished engine process."""
        user = self.image_user(step.image)
        if step.non_root and user.split(":")[0] in ("", "0", "root"):
            raise StepFailed(
                f"{step.task}: image {step.image} runs as root ({user or 'no USER'}), "
                "but the workflow says runAsNonRoot"
            )
        # The image's own user writes the pod folder (a cluster's emptyDir is writable by the pod).
        for root, dirs, _files in os.walk(step.pod):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o777)
        os.chmod(step.pod, 0o777)
        cmd = [self.engine, "run", "--rm", "--network=none", "--pull=never", *self.flags]
        cmd += ["-v", f"{step.pod}:{POD_ROOT}:rw"]
        for m in self.mounts:
            cmd += ["-v", f"{m.path}:{m.path}:{'ro' if m.read_only else 'rw'}"]
        if step.shm_size:
            cmd.append(f"--shm-size={step.shm_size}")
        cmd += [step.image, *step.argv]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        self.log.append(
            {
                "task": step.task,
                "item": step.item,
                "image": step.image,
                "user": user,
                "argv": step.argv,
                "cmd": cmd,
                "returncode": proc.returncode,
            }
        )
        return proc


Runner = Callable[[Step], "subprocess.CompletedProcess[str]"]


def run_workflow(
    doc: dict[str, Any],
    parameters: dict[str, str],
    workdir: Path,
    name: str = "wf-local",
    steps: Runner | None = None,
) -> dict[str, dict[str, Path]]:
    """Execute ``doc`` (a Workflow or WorkflowTemplate); returns ``{task: {artifact: local path}}``."""
    run_step: Runner = steps if steps is not None else HostSteps()
    spec = doc["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    non_root = bool((spec.get("securityContext") or {}).get("runAsNonRoot"))
    scope = {"workflow.name": name}
    for p in spec.get("arguments", {}).get("parameters", []):
        if "value" in p:
            scope[f"workflow.parameters.{p['name']}"] = str(p["value"])
    for k, v in parameters.items():
        scope[f"workflow.parameters.{k}"] = str(v)
    repo = workdir / "artifact-repository"
    outputs: dict[str, dict[str, Path]] = {}
    entry = templates[spec["entrypoint"]]
    for task in _order(entry["dag"]["tasks"]):
        tmpl = templates[task["template"]]
        seq = task.get("withSequence")
        items: list[str | None] = [None]
        if seq:
            items = [str(i) for i in range(int(_subst(str(seq["count"]), scope)))]
        for item in items:
            local = dict(scope) | ({"item": item} if item is not None else {})
            args = task.get("arguments", {})
            for p in args.get("parameters", []):
                local[f"inputs.parameters.{p['name']}"] = _subst(str(p["value"]), local)
            pod = workdir / "pods" / (task["name"] + (f"-{item}" if item is not None else ""))
            pod.mkdir(parents=True)
            given = {a["name"]: a for a in args.get("artifacts", [])}

            def in_pod(path: str, pod: Path = pod) -> Path:
                if not path.startswith(POD_ROOT + "/"):
                    raise StepFailed(f"artifact path {path} outside {POD_ROOT}")
                return pod / path[len(POD_ROOT) + 1 :]

            for art in tmpl.get("inputs", {}).get("artifacts", []):
                key = _repo_key(art)
                if key is not None:
                    src = repo / _subst(key, local)
                else:
                    ref = _VAR.fullmatch(given[art["name"]]["from"])
                    if not ref:
                        raise StepFailed(f"{task['name']}: cannot resolve {given[art['name']]}")
                    _, producer, _, _, out_name = ref.group(1).split(".")
                    src = outputs[producer][out_name]
                if not src.exists():
                    raise StepFailed(
                        f"{task['name']}: input artifact {art['name']} was never produced ({src})"
                    )
                _copy(src, in_pod(art["path"]))
            container = tmpl["container"]
            argv = [_subst(a, local) for a in container["command"] + container.get("args", [])]
            step = Step(
                task["name"], item, str(container.get("image", "")), argv, pod, _shm_size(tmpl), non_root
            )
            proc = run_step(step)
            if proc.returncode != 0:
                failed = StepFailed(
                    f"{task['name']} (item {item}) exited {proc.returncode}:\n{proc.stderr[-3000:]}"
                )
                failed.returncode, failed.stderr = proc.returncode, proc.stderr
                raise failed
            produced = outputs.setdefault(task["name"], {})
            for art in tmpl.get("outputs", {}).get("artifacts", []):
                path = in_pod(art["path"])
                if not path.exists():
                    raise StepFailed(
                        f"{task['name']}: output artifact {art['name']} missing at {art['path']}"
                    )
                key = _repo_key(art)
                if key is not None:
                    _copy(path, repo / _subst(key, local))
                produced[art["name"]] = path
    return outputs


def engine_flags() -> list[str]:
    """Extra ``run`` flags from env ``CONTAINER_RUN_FLAGS`` (e.g. the ulimits a machine needs)."""
    return shlex.split(os.environ.get("CONTAINER_RUN_FLAGS", ""))
