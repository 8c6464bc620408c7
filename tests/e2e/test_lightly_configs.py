"""Every config Lightly published for its Docker job runs unchanged (tests/lightly_configs/table.yaml).

Each row is run as written through the `kurate` command on a tiny generated input; the only translation is
the one the table's header describes (Lightly's mounts and datasources become input_dir / output_dir /
datasource.dataset_id). Rows marked `speed: default` run in `make test`, the others in `make test-all`.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import draw_image, make_image_folder

HERE = Path(__file__).resolve().parents[1] / "lightly_configs"
TABLE: list[dict[str, Any]] = yaml.safe_load((HERE / "table.yaml").read_text())
BY_ID = {row["id"]: row for row in TABLE}
KURATE = str(Path(sys.executable).with_name("kurate"))
#: Tiny model settings for speed, added only for keys the row's config does not set.
SPEED = {
    "lightly.loader.num_workers": "0",
    "lightly.trainer.max_epochs": "1",
    "lightly.collate.input_size": "32",
}
MOUNT_INPUT = ("/home/input_dir", "/input_mount")


# ------------------------------------------------------------------------------------------ the config


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_mapping(row: dict[str, Any]) -> dict[str, Any] | None:
    """The config a python / json5 / yaml row hands kurate (worker keys on top, lightly_config as lightly)."""
    fmt = row["format"]
    if fmt == "docker_run":
        return None
    if fmt == "yaml":
        return yaml.safe_load(row["written"])
    if fmt == "json5":
        parts = {row["role"]: yaml.safe_load(row["written"])}
    else:
        parts = row["config"]
    cfg: dict[str, Any] = dict(parts.get("worker_config") or {})
    if parts.get("lightly_config"):
        cfg["lightly"] = parts["lightly_config"]
    if parts.get("selection_config"):
        cfg["selection_config"] = parts["selection_config"]
    return cfg


def given_keys(row: dict[str, Any]) -> set[str]:
    """Every key the row's config sets (dotted)."""
    cfg = config_mapping(row)
    if cfg is not None:
        return set(_flat(cfg))
    return {a.split("=", 1)[0].lstrip("+") for a in row["args"] if "=" in a and not a.startswith("-")}


def _substitute(text: str, row: dict[str, Any], paths: dict[str, str]) -> str:
    """The argument as the user's shell passes it: the page's placeholders filled in (``placeholders``),
    and any other ``${NAME}`` (a shell variable the user sets, e.g. their token) set to ``name-value``."""
    for placeholder, value in (row.get("placeholders") or {}).items():
        text = text.replace(placeholder, paths["input"] if value == "<input>" else str(value))
    return re.sub(r"\$\{(\w+)\}", lambda m: f"{m.group(1).lower()}-value", text)


def command(row: dict[str, Any], paths: dict[str, str], work: Path) -> tuple[list[str], dict[str, str]]:
    """The `kurate` command line and environment that run ``row`` (see the table's header)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LIGHTLY_TOKEN", "LIGHTLY_WORKER_ID")}
    env.update(row.get("env") or {})
    keys = given_keys(row)
    argv: list[str] = []
    cfg = config_mapping(row)
    if cfg is None:
        argv += [_substitute(a, row, paths) for a in row["args"]]
    else:
        conf = work / "conf"
        conf.mkdir(exist_ok=True)
        (conf / "row.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        argv += ["--config-path", str(conf), "--config-name", "row"]
    if row["expect"] in ("help", "sanity") or row["input"] == "none" and row["expect"] == "error":
        return argv, env
    mounts = row.get("mounts") or {}
    if row["input"] == "datasource":
        if "datasource.dataset_id" not in keys:
            argv.append(f"datasource.dataset_id={paths['input']}")
    elif cfg is not None or any(m in mounts for m in MOUNT_INPUT):
        argv.append(f"input_dir={paths['input']}")
    argv.append(f"output_dir={paths['output']}")
    argv += [f"{k}={v}" for k, v in SPEED.items() if k not in keys]
    return argv, env


# ------------------------------------------------------------------------------------------ inputs, setup


def make_input(row: dict[str, Any], root: Path) -> Path:
    if row["input"] == "videos":
        from tests.video_helpers import make_video

        make_video(root / "clips" / "cam1.mp4", n=24, size=(32, 24), seed=1)
        make_video(root / "clips" / "cam2.mp4", n=24, size=(32, 24), seed=2)
        return root
    # An embeddings file a user passes came from a run over this folder: it has a row for every image,
    # which a corrupt file cannot have (with the check off, kurate refuses inputs the file lacks).
    corrupt = "embeddings" not in (row.get("setup") or {})
    make_image_folder(root, n=10, n_dup=1, corrupt=corrupt)
    return root


def _valid_images(input_dir: Path) -> list[str]:
    return sorted(
        str(p.relative_to(input_dir))
        for p in input_dir.rglob("*")
        if p.is_file() and not p.name.startswith(("broken", "zz_copy")) and p.suffix in (".jpg", ".png")
    )


def _lightly_checkpoint(path: Path) -> None:
    """A checkpoint as lightly-ssl-train / the Docker job wrote it: the CLI model (resnet-18, num_ftrs 32)."""
    import torch
    from lightly.cli._cli_simclr import _SimCLR
    from lightly.models import ResNetGenerator
    from lightly.models.batchnorm import get_norm_layer
    from torch import nn

    torch.manual_seed(7)
    resnet = ResNetGenerator("resnet-18", 1.0)
    last = list(resnet.children())[-1].in_features
    features = nn.Sequential(
        get_norm_layer(3, 0), *list(resnet.children())[:-1], nn.Conv2d(last, 32, 1), nn.AdaptiveAvgPool2d(1)
    )
    model = _SimCLR(features, num_ftrs=32, out_dim=128)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 99, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)


def _lightly_embeddings(path: Path, names: list[str], extra_columns: list[str]) -> None:
    """An embeddings.csv written by lightly's own writer (filenames, embedding_i, labels) + extra columns."""
    import numpy as np
    from lightly.utils.io import save_embeddings

    rng = np.random.default_rng(3)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_embeddings(str(path), rng.normal(size=(len(names), 32)).astype(np.float32), [0] * len(names), names)
    if extra_columns:
        lines = path.read_text().splitlines()
        out = [lines[0] + "".join(f",{c}" for c in extra_columns)]
        out += [line + "".join(f",{rng.random():.4f}" for _ in extra_columns) for line in lines[1:]]
        path.write_text("\n".join(out) + "\n")


def _prediction_task(input_dir: Path, task: str) -> None:
    """Lightly's predictions of ``task`` in the datasource (.lightly/predictions): 1-3 boxes per image."""
    base = input_dir / ".lightly" / "predictions"
    (base / task).mkdir(parents=True, exist_ok=True)
    (base / "tasks.json").write_text(json.dumps([task]))
    cats = [{"id": 0, "name": "car"}, {"id": 1, "name": "truck"}, {"id": 2, "name": "motorbike"}]
    (base / task / "schema.json").write_text(
        json.dumps({"task_type": "object-detection", "categories": cats})
    )
    for i, name in enumerate(_valid_images(input_dir)):
        boxes = [
            {"category_id": j % 3, "bbox": [2 + 6 * j, 3 + 4 * j, 12, 9], "score": 0.8}
            for j in range(1 + i % 3)
        ]
        target = base / task / (name.rsplit(".", 1)[0] + ".json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"file_name": name, "predictions": boxes}))


def object_level_task(row: dict[str, Any]) -> str:
    """The row's object_level.task_name ('' when it has none)."""
    cfg = config_mapping(row)
    if cfg is not None:
        return str(_flat(cfg).get("object_level.task_name") or "")
    return next((a.split("=", 1)[1] for a in row["args"] if a.startswith("object_level.task_name=")), "")


def _lightly_predictions(output_dir: Path, names: list[str], task: str, task_type: str) -> None:
    """A task folder as a Lightly datasource holds it: tasks.json, schema.json, one prediction per image."""
    import numpy as np

    rng = np.random.default_rng(5)
    root = output_dir / ".lightly" / "predictions"
    (root / task).mkdir(parents=True, exist_ok=True)
    (root / "tasks.json").write_text(json.dumps([task]))
    cats = [{"id": i, "name": n} for i, n in enumerate(("sunny", "clouded", "rainy"))]
    (root / task / "schema.json").write_text(json.dumps({"task_type": task_type, "categories": cats}))
    for name in names:
        p = rng.dirichlet(np.ones(3))
        pred = {"category_id": int(p.argmax()), "probabilities": [float(v) for v in p]}
        target = root / task / (name.rsplit(".", 1)[0] + ".json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"file_name": name, "predictions": [pred]}))


def setup_files(row: dict[str, Any], input_dir: Path, output_dir: Path) -> None:
    """The files the config names that its user had made before running it (the table's `setup`).

    An object-level row on its own predictions task finds them in its datasource (the input), as in
    Lightly's docs ("Object detection predictions uploaded to the datasource").
    """
    task = object_level_task(row)
    if task and task != "lightly_pretagging":
        _prediction_task(input_dir, task)
    setup = row.get("setup") or {}
    if "checkpoint" in setup:
        _lightly_checkpoint(output_dir / setup["checkpoint"])
    if "embeddings" in setup:
        images = sorted(str(p.relative_to(input_dir)) for p in input_dir.rglob("*") if p.suffix != ".txt")
        extra = setup.get("embeddings_columns") or []
        _lightly_embeddings(output_dir / setup["embeddings"], images, extra)
    if "predictions" in setup:  # Lightly's .lightly/predictions layout of one task (coral's scores)
        _lightly_predictions(output_dir, _valid_images(input_dir), **setup["predictions"])
    if "relevant_filenames" in setup:
        target = output_dir / setup["relevant_filenames"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(_valid_images(input_dir)[::2]) + "\n")


# ------------------------------------------------------------------------------------------ running


def run(row: dict[str, Any], work: Path, input_dir: Path, output_dir: Path) -> subprocess.CompletedProcess:
    argv, env = command(row, {"input": str(input_dir), "output": str(output_dir)}, work)
    return subprocess.run([KURATE, *argv], capture_output=True, text=True, env=env, cwd=work, timeout=1200)


def run_dir_of(proc: subprocess.CompletedProcess) -> Path:
    m = re.search(r"^kurate: outputs in (.+)$", proc.stdout, re.M)
    assert m, proc.stdout[-2000:] + proc.stderr[-3000:]
    return Path(m.group(1))


def check_complete_run(row: dict[str, Any], proc: subprocess.CompletedProcess) -> dict[str, Any]:
    assert proc.returncode == 0, f"{row['id']}: exit {proc.returncode}\n{proc.stderr[-4000:]}"
    run_dir = run_dir_of(proc)
    report = json.loads((run_dir / "report.json").read_text())
    lists = {
        k: (run_dir / "filenames" / f"{k}_filenames.txt").read_text().splitlines()
        for k in ("corrupt", "duplicate", "removed", "sampled")
    }
    seen_file = run_dir / "filenames" / "seen_filenames.txt"
    lists["seen"] = seen_file.read_text().splitlines() if seen_file.exists() else []
    everything = [n for names in lists.values() for n in names]
    assert len(everything) == len(set(everything)) == report["counts"]["available"]
    assert len(lists["sampled"]) == report["counts"]["selected"]
    if "object-level" in row["needs"]:  # the samples were the crops of the task's boxes
        objects = report["objects"]
        assert objects["crops"] > 0 and objects["sampled"] > 0, objects
        assert (run_dir / "data" / "crops.csv").is_file() and any((run_dir / "crops").rglob("*.*"))
    if "pretagging-builtin-detector" in row["needs"]:
        assert report["pretagging"]["source"].startswith("built-in detector"), report["pretagging"]
    if "no-stopping-condition" in row["needs"]:
        # a complete run: every clean sample not yet seen is selected, and the report says why
        assert lists["removed"] == [], lists["removed"]
        assert report["selection"]["stop_reason"] == "no stopping condition"
        assert "no stopping condition" in proc.stdout
    return {"run_dir": run_dir, "report": report, "lists": lists}


def check_inert_warnings(row: dict[str, Any], proc: subprocess.CompletedProcess) -> None:
    """Every Lightly plumbing key the row sets is named in exactly one warning line."""
    from kurate.config.lightly_keys import INERT

    for key in sorted(given_keys(row) & set(INERT)):
        lines = [ln for ln in proc.stderr.splitlines() if f"{key}: accepted, does nothing here" in ln]
        assert len(lines) == 1, (key, proc.stderr[-3000:])


def params() -> list[Any]:
    out = []
    for row in TABLE:
        # slow rows train as the docs say (e.g. 20 epochs, 8 loader workers, twice): up to 30 min on 2 cores
        marks = [] if row["speed"] == "default" else [pytest.mark.slow, pytest.mark.timeout(1800)]
        out.append(pytest.param(row, id=row["id"], marks=marks))
    return out


@pytest.fixture(scope="session")
def builtin_detector_home(tmp_path_factory) -> Path:
    """A torch home holding the built-in detector's weights file: the right architecture, random
    weights (never downloaded), its classifier biased to persons so that it finds objects."""
    from kurate.models import coco
    from tests.unit.models.test_builtin_detector import put_in_hub_cache

    home = tmp_path_factory.mktemp("torch-home")
    put_in_hub_cache(home, coco.BUILTIN_ARCHITECTURE, {1: 10.0})
    return home


@pytest.mark.parametrize("row", params())
def test_lightly_published_config(row, tmp_path, request, monkeypatch):
    if "pretagging-builtin-detector" in row["needs"] and row["expect"] == "run":
        # Lightly's pretagging model came with its image; kurate's comes with the pretag image or the
        # torch hub cache (kurate never downloads it)
        monkeypatch.setenv("TORCH_HOME", str(request.getfixturevalue("builtin_detector_home")))
        monkeypatch.delenv("KURATE_WEIGHTS_DIR", raising=False)
    work = tmp_path
    input_dir = make_input(row, tmp_path / "input") if row["input"] != "none" else tmp_path / "input"
    output_dir = tmp_path / "output"
    output_dir.mkdir(parents=True, exist_ok=True)
    if row["input"] != "none":
        setup_files(row, input_dir, output_dir)
    expect = row["expect"]
    if row.get("after"):  # the run that made the datapool this row runs on
        first = BY_ID[row["after"]]
        setup_files(first, input_dir, output_dir)
        check_complete_run(first, run(first, work, input_dir, output_dir))
    before = sorted(p for p in output_dir.rglob("*"))
    proc = run(row, work, input_dir, output_dir)
    if expect == "help":
        assert proc.returncode == 0 and proc.stdout.startswith("usage: kurate"), proc.stderr
        return
    if expect == "sanity":
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "sanity check passed" in proc.stdout
        return
    if expect == "error":
        assert proc.returncode == 2, f"{row['id']}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("kurate: error: "), proc.stderr[-2000:]
        assert any(k in last for k in row["error_keys"]), (row["error_keys"], last)
        assert sorted(output_dir.rglob("*")) == before, "a refused config must not write anything"
        return
    assert expect == "run", expect
    result = check_complete_run(row, proc)
    check_inert_warnings(row, proc)
    if "token" in " ".join(row.get("args") or []) or (row.get("env") or {}).get("LIGHTLY_TOKEN"):
        token = next(
            (a.split("=", 1)[1] for a in row.get("args") or [] if a.startswith("token=")),
            (row.get("env") or {}).get("LIGHTLY_TOKEN", ""),
        )
        saved = (result["run_dir"] / "config" / "config.yaml").read_text()
        assert token not in saved and token not in proc.stdout + proc.stderr
    rerun = row.get("rerun")
    if rerun:
        check_rerun(row, rerun, work, input_dir, output_dir, result)


def check_rerun(
    row: dict[str, Any],
    rerun: dict[str, Any],
    work: Path,
    input_dir: Path,
    output_dir: Path,
    first: dict[str, Any],
) -> None:
    """The page's second run: new data arrived (grown) or another input (other); processed data is kept."""
    if rerun["input"] == "grown":
        new = [f"new/img_new_{i}.png" for i in range(4)]
        for i, name in enumerate(new):
            (input_dir / name).parent.mkdir(parents=True, exist_ok=True)
            draw_image(100 + i).save(input_dir / name)
        second_input = input_dir
    else:
        # another folder of OTHER images (make_image_folder would draw the first input's images again, all
        # of them already in the datapool: nothing to add, no new version)
        second_input = work / "other_input"
        new = [f"group{i % 2}/other_{i:03d}.png" for i in range(6)]
        for i, name in enumerate(new):
            (second_input / name).parent.mkdir(parents=True, exist_ok=True)
            draw_image(200 + i).save(second_input / name)
    proc = run(row, work, second_input, output_dir)
    second = check_complete_run(row, proc)
    if rerun["input"] == "grown":
        # only the new samples were processed; everything the first run considered is "seen"
        first_clean = len(first["lists"]["sampled"]) + len(first["lists"]["removed"])
        assert len(second["lists"]["seen"]) == first_clean, second["lists"]
        assert set(second["lists"]["sampled"]) <= set(new)
    pool = second["report"].get("datapool") or {}
    assert pool.get("version", 0) >= 2, pool


def test_table_rows_are_unique_and_well_formed():
    ids = [row["id"] for row in TABLE]
    assert len(ids) == len(set(ids))
    allowed = {"run", "error", "help", "sanity"}
    for row in TABLE:
        assert row["expect"] in allowed, row["id"]
        assert row["source"].get("commit") or row["source"].get("url"), row["id"]
        if row["expect"] == "error":
            assert row.get("error_keys"), row["id"]
            assert row.get("waits_for") or row["lightly"].startswith("rejected"), row["id"]
        if row.get("waits_for"):
            assert row["expect"] == "error", row["id"]
        if row["format"] == "python":
            assert isinstance(row["config"], dict), row["id"]
        if row["format"] == "docker_run" and not row.get("shell_fix"):
            # the args are exactly what the shell passes for the command as written
            assert _shell_args(row) == row["args"], row["id"]
        if row.get("after"):
            assert row["after"] in BY_ID, row["id"]
    assert sum(row["published"] for row in TABLE) >= 50


def _shell_args(row: dict[str, Any]) -> list[str]:
    import shlex

    text = row["written"].replace("\\\n", "")
    text = re.sub(r"\s*>>\s*\S+\s*$", "", " ".join(line.strip() for line in text.split("\n")))
    toks = shlex.split(text)
    i = toks.index(row["image"])
    return toks[i + 1 :]


def test_python_rows_are_the_docs_calls():
    """A python row's config is exactly the literal of the docs' schedule_compute_worker_run call."""
    for row in TABLE:
        if row["format"] != "python" or row.get("python_fix"):
            continue
        call = ast.parse(row["written"]).body[0].value  # type: ignore[attr-defined]
        written = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        assert json.loads(json.dumps(written)) == row["config"], row["id"]


def test_summary_counts():
    """The counts the closing note reports (kept honest by the table itself)."""
    published = [r for r in TABLE if r["published"]]
    waiting = [r for r in TABLE if r.get("waits_for")]
    refused = [r for r in TABLE if r["lightly"].startswith("rejected")]
    runs = [r for r in TABLE if r["expect"] in ("run", "help", "sanity")]
    assert len(runs) + len(waiting) + len(refused) == len(TABLE)
    assert len(published) >= 50


#: The full YAML of Lightly's documented defaults (every key of every "List of Parameters" version).
#: It needs active_learning.* (issue 18) and object_level.* (issue 15b); until both landed it is refused
#: naming one of them, and the landing commit of the second flips WAITS to "" (this test then runs it).
DEFAULTS_WAITS = ""


def test_lightly_defaults_yaml_runs_with_config_name(tmp_path):
    input_dir = make_image_folder(tmp_path / "input", n=6, n_dup=1, corrupt=True).root
    argv = [
        "--config-path",
        str(HERE),
        "--config-name",
        "lightly_defaults",
        f"input_dir={input_dir}",
        f"output_dir={tmp_path / 'output'}",
        *[f"{k}={v}" for k, v in SPEED.items()],
    ]
    proc = subprocess.run([KURATE, *argv], capture_output=True, text=True, timeout=1200)
    if DEFAULTS_WAITS:
        assert proc.returncode == 2, proc.stderr[-3000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert "active_learning" in last or "object_level" in last, last
        return
    row = {"id": "lightly_defaults", "needs": ["no-stopping-condition"], "args": []}
    check_complete_run(row, proc)


def test_lightly_defaults_yaml_without_the_waiting_sections_runs(tmp_path):
    """Every key of the defaults that is not waiting for 18 runs now (drop this test when WAITS is '')."""
    cfg = yaml.safe_load((HERE / "lightly_defaults.yaml").read_text())
    cfg.pop("active_learning")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "defaults.yaml").write_text(yaml.safe_dump(cfg))
    input_dir = make_image_folder(tmp_path / "input", n=6, n_dup=1, corrupt=True).root
    argv = ["--config-path", str(tmp_path / "conf"), "--config-name", "defaults"]
    argv += [f"input_dir={input_dir}", f"output_dir={tmp_path / 'output'}"]
    argv += [f"{k}={v}" for k, v in SPEED.items()]
    proc = subprocess.run([KURATE, *argv], capture_output=True, text=True, timeout=1200)
    row = {"id": "lightly_defaults", "needs": ["no-stopping-condition"], "args": []}
    result = check_complete_run(row, proc)
    # the plumbing keys of the defaults: one warning line each
    for key in ("worker.force_start", "pretagging_upload", "datasource.bypass_verify"):
        assert sum(f"{key}: accepted, does nothing here" in ln for ln in proc.stderr.splitlines()) == 1, key
    assert result["report"]["counts"]["selected"] == 6
