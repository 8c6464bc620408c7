"""The whole pipeline in its images (``make test-images``; needs a container engine and the built images).

The same tiny dataset is curated three times: by the host ``kurate`` (kfp.local SubprocessRunner), by
kfp.local's DockerRunner over the engine's Docker API (every task in the image its component names), and
by the compiled Argo workflow's steps run as containers (each in the image the YAML names, with the command
and args the YAML holds, artifacts through a mounted folder). Both container runs use ``--network=none``,
the input mounted read-only and each image's own non-root user; their outputs must equal the host run's:
the same four file lists and selection, embeddings within 1e-5.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from kurate.cli import run as kurate_run
from kurate.config.load import compose_config
from kurate.demo_data import make_tiny_dataset
from kurate.deploy import images
from kurate.deploy.cluster import from_sources
from kurate.errors import PhaseFailedError
from kurate.pipelines.argo_local import StepFailed
from kurate.pipelines.compile import FILES, compile_all
from kurate.pipelines.containers import data_mounts, run_argo_containers, run_kfp_docker
from kurate.plan import make_plan
from tests.images.containers import (
    IMAGE_USER,
    assert_same_outputs,
    engine,
    require_images,
    run_flags,
    tree_digest,
    writable_by_image_user,
)

pytestmark = pytest.mark.containers

# Small and deterministic: no pretrained weights (the host may have some cached, the images have none),
# loader in-process, 2 embed shards (the fan-out and the merge run too).
SETTINGS = [
    "stopping_condition.n_samples=4",
    "lightly.pre_trained=False",
    "lightly.collate.input_size=32",
    "lightly.loader.num_workers=0",
    "lightly.loader.batch_size=4",
    "dump_dataset=True",
]
SHARDS = 2


@pytest.fixture(scope="module")
def eng() -> str:
    name = engine()
    require_images(name, ("base", *images.PHASES))
    return name


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "input"
    make_tiny_dataset(root, n=12)
    return root


@pytest.fixture(scope="module")
def host_run(tmp_path_factory, data) -> Path:
    out = tmp_path_factory.mktemp("host")
    return Path(kurate_run([f"input_dir={data}", f"output_dir={out}", "run_directory=run", *SETTINGS]))


def _plan(data: Path, out: Path):
    cfg = compose_config([f"input_dir={data}", f"output_dir={out}", "run_directory=run", *SETTINGS])
    return make_plan(cfg)


def test_kfp_docker_runner_equals_the_host_run(eng, data, host_run, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", os.environ.get("DOCKER_HOST", "unix:///run/podman/podman.sock"))
    before = tree_digest(data)
    plan = _plan(data, writable_by_image_user(tmp_path / "out"))
    run_kfp_docker(plan, embed_shards=SHARDS)
    run_dir = Path(plan.run_dir)
    assert_same_outputs(run_dir, host_run)
    assert len(list((run_dir / "data" / "sampled").rglob("*.png"))) == 4
    report = json.loads((run_dir / "report.json").read_text())
    assert report["counts"]["selected"] == 4
    # The tasks ran as the image's user (it owns what they wrote), and the input is untouched.
    assert os.stat(run_dir / "report.json").st_uid == 10001
    assert tree_digest(data) == before


def test_argo_steps_as_containers_equal_the_host_run(eng, data, host_run, tmp_path):
    compiled = tmp_path / "compiled"
    compile_all(str(compiled), from_sources(environ={"KURATE_REGISTRY": images.registry()}), targets=["argo"])
    doc = yaml.safe_load((compiled / FILES["argo"][1]).read_text())
    before = tree_digest(data)
    plan = _plan(data, writable_by_image_user(tmp_path / "out"))
    ran = run_argo_containers(plan, doc, eng, embed_shards=SHARDS, workdir=str(tmp_path))
    assert_same_outputs(Path(plan.run_dir), host_run)
    assert tree_digest(data) == before

    # Every step ran in the image the YAML names, with the YAML's command, as the image's own user,
    # without network, the input read-only.
    templates = {t["name"]: t for t in doc["spec"]["templates"] if "container" in t}
    steps = [r["task"] for r in ran.log]
    assert sorted(set(steps)) == sorted(templates) and steps.count("embed") == SHARDS
    for record in ran.log:
        container = templates[record["task"]]["container"]
        assert record["image"] == container["image"] and record["user"] == IMAGE_USER
        assert record["argv"][:3] == container["command"] and record["returncode"] == 0
        cmd = record["cmd"]
        assert "--network=none" in cmd and "--pull=never" in cmd
        assert f"{data}:{data}:ro" in cmd
    embed = next(r for r in ran.log if r["task"] == "embed")
    assert "--shm-size=2g" in embed["cmd"]  # the YAML's memory-backed /dev/shm volume


def test_a_failing_task_fails_the_container_run(eng, tmp_path, monkeypatch):
    """A task that exits non-zero in its container fails the run (kfp 2.17's DockerRunner alone reports
    SUCCESS for it: kubeflow/pipelines#13332), on both runners, with the phase's own one-line error."""
    monkeypatch.setenv("DOCKER_HOST", os.environ.get("DOCKER_HOST", "unix:///run/podman/podman.sock"))
    empty = tmp_path / "empty"
    empty.mkdir()
    plan = _plan(empty, writable_by_image_user(tmp_path / "out"))
    with pytest.raises(PhaseFailedError, match="no image or video files found under") as err:
        run_kfp_docker(plan)
    assert "\n" not in str(err.value)
    compiled = tmp_path / "compiled"
    compile_all(str(compiled), from_sources(environ={"KURATE_REGISTRY": images.registry()}), targets=["argo"])
    doc = yaml.safe_load((compiled / FILES["argo"][1]).read_text())
    with pytest.raises(PhaseFailedError, match="no image or video files found under") as err:
        run_argo_containers(plan, doc, eng)
    assert isinstance(err.value.__context__, StepFailed) or err.value.detail  # the step's stderr kept


def test_the_mounted_input_is_read_only_and_there_is_no_network(eng, data, tmp_path):
    """What the runners' flags promise, checked inside a phase image with the same mounts and flags."""
    plan = _plan(data, writable_by_image_user(tmp_path / "out"))
    mounts = data_mounts(plan)
    assert [(m.path, m.read_only) for m in mounts[:2]] == [(str(data), True), (str(tmp_path / "out"), False)]
    probe = (
        "import socket, sys\n"
        f"try:\n    open({str(data / 'x.txt')!r}, 'w')\n    sys.exit('input writable')\n"
        "except OSError as e:\n    print('input:', e.strerror)\n"
        "try:\n    socket.create_connection(('10.0.0.1', 53), timeout=2)\n    sys.exit('network reachable')\n"
        "except OSError as e:\n    print('network:', e.strerror or e)\n"
    )
    cmd = [eng, "run", "--rm", "--network=none", "--pull=never", *run_flags(), "-v", f"{data}:{data}:ro"]
    proc = subprocess.run(
        [*cmd, images.image_for("ingest"), "python", "-c", probe], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Read-only file system" in proc.stdout and "network:" in proc.stdout


def test_a_root_image_is_refused_where_the_workflow_says_run_as_non_root(eng, data, tmp_path):
    """The runAsNonRoot check is real: an image without a non-root USER does not start."""
    from kurate.pipelines.argo_local import ContainerSteps, Step

    pod = tmp_path / "pod"
    pod.mkdir()
    step = Step("probe", None, "localhost/python:3.11-slim-bookworm", ["python", "-c", "0"], pod, "", True)
    if subprocess.run([eng, "image", "inspect", step.image], capture_output=True).returncode != 0:
        step.image = images.image_for("kurate")  # starts as root too (it becomes the shared dir's owner)
    with pytest.raises(StepFailed, match="runAsNonRoot"):
        ContainerSteps(engine=eng)(step)


def test_kurate_command_with_every_task_in_its_image(eng, data, host_run, tmp_path, monkeypatch):
    """The user-facing switch: ``KURATE_RUNNER=argo kurate ...`` (the Argo steps as containers)."""
    from kurate.cli import main

    monkeypatch.setenv("KURATE_RUNNER", "argo")
    monkeypatch.setenv("CONTAINER_ENGINE", eng)
    out = writable_by_image_user(tmp_path / "out")
    before = tree_digest(data)
    assert main([f"input_dir={data}", f"output_dir={out}", "run_directory=run", *SETTINGS]) == 0
    assert_same_outputs(out / "run", host_run)
    assert os.stat(out / "run" / "report.json").st_uid == (10001 if os.geteuid() == 0 else os.getuid())
    assert tree_digest(data) == before
