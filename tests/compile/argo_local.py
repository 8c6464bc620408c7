"""Run a compiled Argo Workflow on this machine, the way the Argo controller would, minus Kubernetes.

Reads the YAML (nothing from kurate's Python objects), walks the DAG in dependency order, expands
``withSequence``, substitutes ``{{workflow.*}}``, ``{{inputs.parameters.*}}`` and ``{{item}}``, and runs
each template's exact ``command`` + ``args`` as a subprocess of this Python (the image is not
pulled: its contents are proven in tests/images). Artifacts move like Argo moves them: an output
path is collected after the step, copied to the consumer's input path before it; key-only artifacts
(``s3.key``/``gcs.key``) go through a local folder standing in for the artifact repository, so the
shard fan-in is exercised through keys exactly as written. Each step sees its own pod folder in
place of ``/tmp/kurate``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

POD_ROOT = "/tmp/kurate"
_VAR = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")


class StepFailed(RuntimeError):
    """A step exited non-zero (its stderr is in the message)."""


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


def run_workflow(
    doc: dict[str, Any], parameters: dict[str, str], workdir: Path, name: str = "wf-local"
) -> dict:
    """Execute ``doc`` (a Workflow or WorkflowTemplate); returns ``{task: {artifact: local path}}``."""
    spec = doc["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
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
                assert path.startswith(POD_ROOT + "/"), f"artifact path {path} outside {POD_ROOT}"
                return pod / path[len(POD_ROOT) + 1 :]

            for art in tmpl.get("inputs", {}).get("artifacts", []):
                key = _repo_key(art)
                if key is not None:
                    src = repo / _subst(key, local)
                else:
                    ref = _VAR.fullmatch(given[art["name"]]["from"])
                    assert ref, given[art["name"]]
                    _, producer, _, _, out_name = ref.group(1).split(".")
                    src = outputs[producer][out_name]
                if not src.exists():
                    raise StepFailed(
                        f"{task['name']}: input artifact {art['name']} was never produced ({src})"
                    )
                _copy(src, in_pod(art["path"]))
            container = tmpl["container"]
            argv = [_subst(a, local) for a in container["command"] + container.get("args", [])]
            argv = [str(in_pod(a)) if a.startswith(POD_ROOT + "/") else a for a in argv]
            if argv[0] == "python":
                argv[0] = sys.executable
            env = dict(os.environ, HOME=str(pod))
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=pod)
            if proc.returncode != 0:
                raise StepFailed(
                    f"{task['name']} (item {item}) exited {proc.returncode}:\n{proc.stderr[-3000:]}"
                )
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
