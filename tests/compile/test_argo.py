"""The Argo target: valid against Argo's published JSON schema, structurally sound where the schema
cannot tell (templates exist, every step has an image and a command, artifacts are produced before
they are consumed, variables resolve), the same DAG as the KFP pipeline, cluster settings in place,
golden; and it actually runs: the YAML's own commands on tiny data, sharded, equal to unsharded."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from kurate.io import embeddings_io, filelist
from kurate.pipelines.argo import workflow_dict
from kurate.pipelines.argo_local import run_workflow
from kurate.pipelines.compile import FILES, compile_all
from tests.compile.helpers import PHASES, assert_matches_golden, docs, options

SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "reference" / "argo-workflows-v4.1.2-schema.json"
_VAR = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")


@pytest.fixture(scope="module")
def schema() -> dict:
    assert SCHEMA.is_file(), f"Argo's schema is part of the team kit: {SCHEMA}"
    return json.loads(SCHEMA.read_text())


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("argo")
    compile_all(str(out), options(), targets=["argo"])
    return {"WorkflowTemplate": out / FILES["argo"][0], "Workflow": out / FILES["argo"][1]}


def _validate(doc: dict, schema: dict) -> list[str]:
    """Errors against the definition of the document's kind (readable paths), then the whole schema."""
    kind_schema = {
        "$schema": schema["$schema"],
        "definitions": schema["definitions"],
        "$ref": f"#/definitions/io.argoproj.workflow.v1alpha1.{doc.get('kind')}",
    }
    validator = jsonschema.Draft202012Validator(kind_schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(doc)]
    if not errors and not jsonschema.Draft202012Validator(schema).is_valid(doc):
        errors.append("valid for its kind but not against the whole schema")
    return errors


@pytest.mark.parametrize("kind", ["WorkflowTemplate", "Workflow"])
def test_valid_against_argo_schema(compiled, schema, kind):
    (doc,) = docs(compiled[kind])
    assert doc["kind"] == kind
    assert _validate(doc, schema) == []


def test_schema_check_catches_mistakes(compiled, schema):
    """The validation above is not vacuous: typical mistakes fail it."""
    (doc,) = docs(compiled["WorkflowTemplate"])
    bad_args = copy.deepcopy(doc)
    bad_args["spec"]["templates"][0]["container"]["args"] = "--config {}"
    assert any("args" in e for e in _validate(bad_args, schema))
    bad_seq = copy.deepcopy(doc)
    dag = next(t for t in bad_seq["spec"]["templates"] if "dag" in t)
    next(t for t in dag["dag"]["tasks"] if t["name"] == "embed")["withSequence"] = ["0", "1"]
    assert _validate(bad_seq, schema)


def _templates(doc: dict) -> dict[str, dict]:
    return {t["name"]: t for t in doc["spec"]["templates"]}


def _dag(doc: dict) -> dict[str, dict]:
    entry = _templates(doc)[doc["spec"]["entrypoint"]]
    return {t["name"]: t for t in entry["dag"]["tasks"]}


def _ancestors(dag: dict[str, dict], name: str) -> set[str]:
    out: set[str] = set()
    todo = list(dag[name].get("dependencies", []))
    while todo:
        d = todo.pop()
        if d not in out:
            out.add(d)
            todo += dag[d].get("dependencies", [])
    return out


def structure_problems(doc: dict) -> list[str]:
    """What the JSON schema cannot check; returns the problems found (empty = sound)."""
    problems = []
    templates = _templates(doc)
    if doc["spec"]["entrypoint"] not in templates:
        return [f"entrypoint {doc['spec']['entrypoint']} is not a template"]
    dag = _dag(doc)
    declared_wf = {p["name"] for p in doc["spec"].get("arguments", {}).get("parameters", [])}
    for name, task in dag.items():
        tmpl = templates.get(task["template"])
        if tmpl is None:
            problems.append(f"task {name}: template {task['template']} does not exist")
            continue
        unknown = [d for d in task.get("dependencies", []) if d not in dag]
        if unknown:
            problems.append(f"task {name}: depends on unknown task(s) {unknown}")
            continue
        if name in _ancestors(dag, name):
            problems.append(f"task {name}: cyclic dependencies")
            continue
        c = tmpl.get("container")
        if not c or not c.get("image") or not c.get("command"):
            problems.append(f"template {tmpl['name']}: no image or no command")
        params_in = {p["name"] for p in tmpl.get("inputs", {}).get("parameters", [])}
        given_params = {p["name"] for p in task.get("arguments", {}).get("parameters", [])}
        if params_in != given_params:
            problems.append(
                f"task {name}: passes parameters {sorted(given_params)}, template wants {sorted(params_in)}"
            )
        text = json.dumps(tmpl)
        for var in _VAR.findall(text):
            if var.startswith("inputs.parameters.") and var.split(".", 2)[2] not in params_in:
                problems.append(f"template {tmpl['name']}: uses undeclared {{{{{var}}}}}")
            if var.startswith("workflow.parameters.") and var.split(".", 2)[2] not in declared_wf:
                problems.append(f"template {tmpl['name']}: uses undeclared {{{{{var}}}}}")
        for p in task.get("arguments", {}).get("parameters", []):
            for var in _VAR.findall(str(p["value"])):
                if var.startswith("workflow.parameters.") and var.split(".", 2)[2] not in declared_wf:
                    problems.append(f"task {name}: uses undeclared {{{{{var}}}}}")
                if var == "item" and "withSequence" not in task and "withItems" not in task:
                    problems.append(f"task {name}: uses {{{{item}}}} without a loop")
        given_arts = {a["name"]: a for a in task.get("arguments", {}).get("artifacts", [])}
        for art in tmpl.get("inputs", {}).get("artifacts", []):
            key = next((art[s]["key"] for s in ("s3", "gcs") if s in art), None)
            if key is not None:  # a key in the repository: some ancestor must write under it
                writers = [
                    t
                    for t in _ancestors(dag, name)
                    for o in templates.get(dag[t]["template"], {}).get("outputs", {}).get("artifacts", [])
                    if any(
                        s in o and o[s]["key"].startswith(key + "/") or s in o and o[s]["key"] == key
                        for s in ("s3", "gcs")
                    )
                ]
                if not writers:
                    problems.append(f"task {name}: reads key {key} that no earlier task writes")
                continue
            if art["name"] not in given_arts:
                problems.append(f"task {name}: input artifact {art['name']} is not passed")
                continue
            ref = _VAR.fullmatch(given_arts[art["name"]].get("from", ""))
            parts = ref.group(1).split(".") if ref else []
            if len(parts) != 5 or parts[0] != "tasks" or parts[2:4] != ["outputs", "artifacts"]:
                problems.append(f"task {name}: artifact {art['name']} does not come from a task output")
                continue
            producer, out_name = parts[1], parts[4]
            if producer not in _ancestors(dag, name):
                problems.append(f"task {name}: consumes {producer}.{out_name} before {producer} has run")
            producer_tmpl = templates.get(dag[producer]["template"]) if producer in dag else None
            outs = {o["name"] for o in (producer_tmpl or {}).get("outputs", {}).get("artifacts", [])}
            if out_name not in outs:
                problems.append(f"task {name}: {producer} has no output artifact {out_name}")
    return problems


def test_structure(compiled):
    (doc,) = docs(compiled["WorkflowTemplate"])
    assert structure_problems(doc) == []
    commands = {n: _templates(doc)[t["template"]]["container"]["command"] for n, t in _dag(doc).items()}
    assert commands == {p: ["python", "-m", f"kurate.phases.{p}"] for p in [*PHASES, "merge"]}


def test_structure_check_catches_mistakes(compiled):
    (doc,) = docs(compiled["WorkflowTemplate"])

    def broken(change):
        d = copy.deepcopy(doc)
        change(d)
        return structure_problems(d)

    def no_dependency(d):  # select would read merge's embeddings before merge ran
        _dag(d)["select"]["dependencies"] = ["ingest"]

    def missing_template(d):
        _dag(d)["check"]["template"] = "chek"

    def no_image(d):
        del _templates(d)["export"]["container"]["image"]

    def wrong_output(d):
        _dag(d)["export"]["arguments"]["artifacts"][0]["from"] = "{{tasks.ingest.outputs.artifacts.filez}}"

    def undeclared(d):
        _templates(d)["ingest"]["container"]["args"].append("{{inputs.parameters.nope}}")

    def no_shard_writer(d):
        del _templates(d)["embed"]["outputs"]["artifacts"][0]["s3"]
        _templates(d)["embed"]["outputs"]["artifacts"][0]["s3"] = {"key": "elsewhere/x"}

    assert any("before merge has run" in p for p in broken(no_dependency))
    assert any("does not exist" in p for p in broken(missing_template))
    assert any("no image" in p for p in broken(no_image))
    assert any("no output artifact filez" in p for p in broken(wrong_output))
    assert any("undeclared" in p for p in broken(undeclared))
    assert any("no earlier task writes" in p for p in broken(no_shard_writer))


def test_same_dag_as_kfp(compiled, tmp_path):
    """Argo's dependencies are KFP's, with the ParallelFor sub-DAG (for-loop-1) as the embed loop task."""
    compile_all(str(tmp_path), options(), targets=["kfp"])
    ir = docs(tmp_path / FILES["kfp"][0])[0]
    kfp_deps = {
        n: set(t.get("dependentTasks", [])) - {"shards"}
        for n, t in ir["root"]["dag"]["tasks"].items()
        if n != "shards"
    }
    rename = {"for-loop-1": "embed"}
    kfp_deps = {rename.get(n, n): {rename.get(d, d) for d in deps} for n, deps in kfp_deps.items()}
    (doc,) = docs(compiled["WorkflowTemplate"])
    argo_deps = {n: set(t.get("dependencies", [])) for n, t in _dag(doc).items()}
    assert argo_deps == kfp_deps


def test_gpu_toleration_shm_and_resources(compiled):
    (doc,) = docs(compiled["WorkflowTemplate"])
    t = _templates(doc)
    embed = t["embed"]
    res = embed["container"]["resources"]
    assert res["limits"] == {"nvidia.com/gpu": "1"} and res["requests"]["cpu"] == "4"
    assert embed["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert embed["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]
    assert embed["container"]["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
    for gpu_task in ("pretag", "train"):
        task = t[gpu_task]
        assert task["container"]["resources"]["limits"] == {"nvidia.com/gpu": "1"}, gpu_task
        assert task["tolerations"] == embed["tolerations"] and task["volumes"] == embed["volumes"]
    for name in [*PHASES, "merge"]:
        req = t[name]["container"]["resources"]["requests"]
        assert req["cpu"] and req["memory"], name
        if name not in ("embed", "pretag", "train"):
            assert "tolerations" not in t[name] and "limits" not in t[name]["container"]["resources"]
    assert doc["spec"]["securityContext"] == {"runAsNonRoot": True}


def test_cpu_only_and_gcs_options():
    doc = workflow_dict(
        options(
            gpu_count=0,
            pretag_gpu_count=0,
            train_gpu_count=0,
            argo_artifact_store="gcs",
            pod_labels={"team": "vision"},
        )
    )
    embed = _templates(doc)["embed"]
    assert "limits" not in embed["container"]["resources"] and "tolerations" not in embed
    for name in ("pretag", "train"):
        task = _templates(doc)[name]
        assert "limits" not in task["container"]["resources"] and "tolerations" not in task
    assert (
        "gcs" in embed["outputs"]["artifacts"][0]
        and "gcs" in _templates(doc)["merge"]["inputs"]["artifacts"][0]
    )
    assert doc["spec"]["podMetadata"] == {"labels": {"team": "vision"}}
    assert structure_problems(doc) == []


def test_workflow_and_template_share_the_spec(compiled):
    (tmpl,) = docs(compiled["WorkflowTemplate"])
    (wf,) = docs(compiled["Workflow"])
    assert wf["spec"] == tmpl["spec"]
    assert (
        tmpl["metadata"]["name"] == "kurate-curation" and wf["metadata"]["generateName"] == "kurate-curation-"
    )


def test_matches_golden(compiled):
    assert_matches_golden(compiled["WorkflowTemplate"], FILES["argo"][0])
    assert_matches_golden(compiled["Workflow"], FILES["argo"][1])


# --------------------------------------------------------------------------- it runs


EMBED = {
    "lightly": {
        "model": {"name": "resnet-18", "num_ftrs": 16, "width": 1.0, "out_dim": 128},
        "collate": {"input_size": 32},
        "loader": {"batch_size": 4, "num_workers": 0},
        "pre_trained": False,
        "seed": 1,
    }
}


@pytest.mark.parametrize("embedder", ["precomputed", pytest.param("model", marks=pytest.mark.slow)])
def test_runs_sharded_and_equals_unsharded(compiled, tmp_path, image_folder, embedder):
    """The compiled YAML's own commands, 2 embed shards through repository keys, then the merge: the same
    embeddings (within 1e-5) and selection as the library's unsharded run. ``precomputed`` feeds a
    Lightly embeddings.csv (no torch in the steps, fast); ``model`` embeds with the ResNet. The pretag
    step reads a predictions file, so select is weighted and export writes weak labels."""
    from kurate.phases.check import run_check
    from kurate.phases.embed import run_embed
    from kurate.phases.ingest import run_ingest
    from kurate.phases.pretag import run_pretag
    from kurate.phases.select import run_select

    data = image_folder(n=9, n_dup=1)
    box = {"category_id": 1, "bbox": [1, 1, 4, 4], "score": 0.9}
    lines = [{"file_name": n, "predictions": [box] * (i % 3)} for i, n in enumerate(sorted(data.images))]
    (tmp_path / "preds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (tmp_path / "pretag.yaml").write_text(f"source: predictions\npredictions: {tmp_path / 'preds.jsonl'}\n")
    pretag_cfg = {"pretagging": True, "pretagging_config": str(tmp_path / "pretag.yaml")}
    embed_cfg = EMBED
    if embedder == "precomputed":
        names = sorted(data.images)
        vectors = np.random.default_rng(3).standard_normal((len(names), 8)).astype(np.float32)
        embeddings_io.write_lightly_csv(str(tmp_path / "pre.csv"), names, vectors)
        embed_cfg = {"embeddings": str(tmp_path / "pre.csv")}
    select_cfg = {
        "method": "coreset",
        "stopping_condition": {"n_samples": 4, "min_distance": -1},
        "scorer_config": {"frequency_penalty": 0.5, "min_score": 0.2},
    }
    run_dir = tmp_path / "out" / "run"
    params = {
        "ingest_config": json.dumps({"input_dir": str(data.root)}),
        "check_config": json.dumps({"remove_exact_duplicates": True, "workers": 1}),
        "train_config": json.dumps({"enable_training": False}),
        "embed_config": json.dumps(embed_cfg),
        "pretag_config": json.dumps(pretag_cfg),
        "select_config": json.dumps(select_cfg),
        "export_config": json.dumps({"run_output": str(run_dir), "append_weak_labels": True}),
        "embed_shards": "2",
    }
    (doc,) = docs(compiled["Workflow"])
    outs = run_workflow(doc, params, tmp_path / "argo")
    keys = tmp_path / "argo" / "artifact-repository" / "wf-local" / "embed-shards"
    assert sorted(p.name for p in keys.iterdir()) == ["0", "1"]

    lib = tmp_path / "lib"
    run_ingest(str(lib / "files"), {"input_dir": str(data.root)})
    run_check(str(lib / "files"), str(lib / "clean"), str(lib / "corrupt"), str(lib / "dups"), {"workers": 1})
    run_embed(str(lib / "clean"), str(lib / "emb"), embed_cfg)
    run_pretag(str(lib / "clean"), str(lib / "pred"), pretag_cfg)
    run_select(str(lib / "emb"), str(lib / "files"), str(lib / "sel"), select_cfg, str(lib / "pred"))

    names, x, meta = embeddings_io.read_embeddings(str(outs["merge"]["embeddings"]))
    want_names, want_x, _ = embeddings_io.read_embeddings(str(lib / "emb"))
    assert names == want_names == sorted(data.images) and meta["shards"] == 2
    np.testing.assert_allclose(x, want_x, atol=1e-5)
    want = filelist.read(str(lib / "sel"))
    got = filelist.read(str(outs["select"]["selection"]))
    assert got.names == want.names and got.column("score") == want.column("score")
    assert got.extra["scorer"]["active"] and len(set(got.column("score"))) > 1
    sampled = (run_dir / "filenames" / "sampled_filenames.txt").read_text().splitlines()
    assert sorted(sampled) == sorted(want.names) and (run_dir / "report.json").is_file()
    weak = json.loads((run_dir / "data" / "weak_labels.json").read_text())
    assert [s["file_name"] for s in weak["samples"]] == sorted(want.names)


def test_a_failing_step_stops_the_workflow(compiled, tmp_path):
    """The runner is not a rubber stamp: a phase that fails (empty input) fails the run."""
    from kurate.pipelines.argo_local import StepFailed

    (tmp_path / "empty").mkdir()
    params = {f"{p}_config": "{}" for p in PHASES} | {
        "ingest_config": json.dumps({"input_dir": str(tmp_path / "empty")})
    }
    (doc,) = docs(compiled["Workflow"])
    with pytest.raises(StepFailed, match="ingest"):
        run_workflow(doc, params, tmp_path / "argo")
    assert not (tmp_path / "argo" / "pods" / "check").exists()  # nothing ran after the failure


def test_object_level_runs_through_the_argo_steps(compiled, tmp_path):
    """object_level through the compiled YAML's own commands: pretag reads the Lightly task, the two
    embed shards cut the crops (their embeddings from a precomputed file of crop names), select and
    export work on crops; the same crops and selection as the library's run."""
    from kurate.config.load import compose_config
    from kurate.media import crops
    from kurate.phases.check import run_check
    from kurate.phases.embed import run_embed
    from kurate.phases.ingest import run_ingest
    from kurate.phases.pretag import run_pretag
    from kurate.phases.select import run_select
    from kurate.plan import make_plan
    from tests.unit.phases.test_object_level import make_world

    (tmp_path / "in").mkdir()
    make_world(tmp_path / "in")
    plan = make_plan(
        compose_config(
            [
                f"input_dir={tmp_path / 'in'}",
                f"output_dir={tmp_path / 'out'}",
                "run_directory=run",
                "object_level.task_name=vehicles",
                "stopping_condition.n_samples=3",
            ]
        )
    )
    t = plan.task_configs
    lib = tmp_path / "lib"
    run_ingest(str(lib / "files"), t["ingest"])
    run_check(str(lib / "files"), str(lib / "clean"), str(lib / "corrupt"), str(lib / "dups"), {"workers": 1})
    run_pretag(str(lib / "clean"), str(lib / "pred"), t["pretag"])
    crop_names = crops.crop_list(filelist.read(str(lib / "clean")), str(lib / "pred"), 0.0).names
    vectors = np.random.default_rng(2).standard_normal((len(crop_names), 8)).astype(np.float32)
    embeddings_io.write_lightly_csv(str(tmp_path / "crops.csv"), crop_names, vectors)
    t["embed"]["embeddings"] = str(tmp_path / "crops.csv")
    params = {f"{p}_config": json.dumps(t[p]) for p in PHASES} | {"embed_shards": "2"}
    (doc,) = docs(compiled["Workflow"])
    outs = run_workflow(doc, params, tmp_path / "argo")
    names, _, meta = embeddings_io.read_embeddings(str(outs["merge"]["embeddings"]))
    assert names == crop_names and meta["shards"] == 2 and meta["object_level"]["crops"] == 8
    run_embed(str(lib / "clean"), str(lib / "emb"), t["embed"], predictions_in=str(lib / "pred"))
    run_select(str(lib / "emb"), str(lib / "files"), str(lib / "sel"), t["select"], str(lib / "pred"))
    got = filelist.read(str(outs["select"]["selection"]))
    assert got.names == filelist.read(str(lib / "sel")).names and len(got.names) == 3
    run_dir = tmp_path / "out" / "run"
    assert (run_dir / "filenames" / "sampled_crops.txt").read_text().split() == sorted(got.names)
    assert sorted(p.name for p in (run_dir / "crops" / "in-crops").rglob("*.*")) == sorted(
        n.rsplit("/", 1)[1] for n in got.names
    )
