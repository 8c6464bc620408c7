"""The compiled KFP and Vertex pipelines: they load back (in the kfp SDK, in Vertex AI's PipelineJob),
carry the right tasks, images, artifact types and cluster settings, and match the golden specs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kurate.deploy import images
from kurate.pipelines.compile import FILES, compile_all, compile_kfp, compile_vertex, main
from tests.compile.helpers import PHASES, assert_matches_golden, docs, options

ROOT_TASKS = {"ingest", "check", "train", "shards", "for-loop-1", "merge", "pretag", "select", "export"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("compiled")
    compile_all(str(out), options())
    return {t: out / FILES[t][0] for t in FILES}


def _ir(path: Path) -> dict:
    return docs(path)[0]


def _platform(path: Path) -> dict:
    d = docs(path)
    assert len(d) == 2, "the kfp target has the IR and the kfp-kubernetes platform document"
    return d[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _executor(spec: dict, component: str) -> dict:
    label = spec["components"][component]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]["container"]


def test_make_compile_writes_every_target(tmp_path):
    assert main(["--out-dir", str(tmp_path)]) == 0
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(f for files in FILES.values() for f in files)


def test_bad_option_fails_at_start_with_one_line(tmp_path, capsys):
    assert main(["--out-dir", str(tmp_path), "--gpu-toleration-effect", "Sometimes"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--gpu-toleration-effect" in err and "NoSchedule" in err
    assert not any(tmp_path.rglob("*.yaml"))


def test_kfp_loads_back_in_the_sdk(compiled):
    from kfp import components

    comp = components.load_component_from_file(str(compiled["kfp"]))
    assert comp.name == "kurate-curation"
    assert set(comp.component_spec.inputs) == {f"{t}_config" for t in PHASES} | {"embed_shards"}


def test_kfp_tasks_images_and_dependencies(compiled):
    spec = _ir(compiled["kfp"])
    dag = spec["root"]["dag"]["tasks"]
    assert set(dag) == ROOT_TASKS
    for t in PHASES:
        comp = f"comp-{t}"
        assert _executor(spec, comp)["image"] == images.image_for(t, images.DEFAULT_REGISTRY)
    assert _executor(spec, "comp-merge")["image"].endswith("/kurate-base:" + images.__version__)
    assert set(dag["check"]["dependentTasks"]) == {"ingest"}
    assert set(dag["train"]["dependentTasks"]) == {"check"}
    # embed takes pretag's predictions (object_level crops): the fan-out waits for pretag too
    assert set(dag["for-loop-1"]["dependentTasks"]) == {"check", "shards", "train", "pretag"}
    assert set(dag["merge"]["dependentTasks"]) == {"for-loop-1"}
    assert set(dag["pretag"]["dependentTasks"]) == {"check"}
    assert set(dag["select"]["dependentTasks"]) == {"merge", "ingest", "pretag", "check"}
    assert set(dag["export"]["dependentTasks"]) == {"ingest", "check", "merge", "pretag", "select"}
    assert dag["ingest"]["cachingOptions"].get("enableCache") is not True
    # The fan-out: embed runs once per item of the shards task's list, merge collects them.
    loop = dag["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--shards-Output"
    inner = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert set(inner) == {"embed"}
    assert inner["embed"]["inputs"]["artifacts"]["model"]["componentInputArtifact"].startswith(
        "pipelinechannel--"
    )
    assert (
        inner["embed"]["inputs"]["artifacts"]["predictions"]["componentInputArtifact"]
        == "pipelinechannel--pretag-predictions"
    )
    assert inner["embed"]["inputs"]["parameters"]["shard_index"]["componentInputParameter"].endswith(
        "loop-item"
    )
    assert spec["root"]["inputDefinitions"]["parameters"]["embed_shards"]["defaultValue"] == 1


def test_kfp_artifact_types(compiled):
    comps = _ir(compiled["kfp"])["components"]

    def out_types(name):
        return {
            k: v["artifactType"]["schemaTitle"]
            for k, v in comps[name]["outputDefinitions"]["artifacts"].items()
        }

    assert out_types("comp-ingest") == {"files": "system.Dataset"}
    assert out_types("comp-check") == {k: "system.Dataset" for k in ("clean", "corrupt", "duplicates")}
    assert out_types("comp-train") == {"model": "system.Model"}
    assert out_types("comp-embed") == {"embeddings": "system.Dataset"}
    embed_in = comps["comp-embed"]["inputDefinitions"]["artifacts"]
    assert embed_in["model"]["artifactType"]["schemaTitle"] == "system.Model"
    assert embed_in["model"]["isOptional"] is True  # embed also runs alone, without a train task
    assert out_types("comp-merge") == {"embeddings": "system.Dataset"}
    assert out_types("comp-pretag") == {"predictions": "system.Dataset"}
    assert set(comps["comp-select"]["inputDefinitions"]["artifacts"]) == {
        "embeddings",
        "files",
        "predictions",
        "clean",  # computed lightly.* metadata for selection_config
    }
    assert comps["comp-merge"]["inputDefinitions"]["artifacts"]["shards"]["isArtifactList"] is True
    ins = comps["comp-export"]["inputDefinitions"]
    assert set(ins["artifacts"]) == {
        "files",
        "clean",
        "corrupt",
        "duplicates",
        "embeddings",
        "selection",
        "predictions",
    }
    assert ins["parameters"]["config"]["parameterType"] == "STRING"


def test_kfp_resources_gpu_toleration_and_shm(compiled):
    spec = _ir(compiled["kfp"])
    execs = spec["deploymentSpec"]["executors"]
    for name, ex in execs.items():
        res = ex["container"]["resources"]
        assert res["resourceCpuRequest"] and res["resourceMemoryRequest"], f"{name} has no CPU/memory request"
    embed = _executor(spec, "comp-embed")["resources"]
    assert (
        embed["accelerator"]["resourceType"] == "nvidia.com/gpu"
        and embed["accelerator"]["resourceCount"] == "1"
    )
    assert (embed["resourceCpuRequest"], embed["resourceMemoryRequest"]) == ("4", "16Gi")
    for name in ("pretag", "train"):
        res = _executor(spec, f"comp-{name}")["resources"]
        assert res["accelerator"]["resourceCount"] == "1", f"{name} is GPU-tolerated like embed"
    assert not any(
        "accelerator" in ex["container"]["resources"]
        for n, ex in execs.items()
        if n not in ("exec-embed", "exec-pretag", "exec-train")
    )
    platform = _platform(compiled["kfp"])
    assert set(platform) == {"exec-embed", "exec-pretag", "exec-train"}
    for ex in ("exec-embed", "exec-pretag", "exec-train"):
        assert platform[ex]["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
        assert platform[ex]["emptyDirMounts"] == [
            {"volumeName": "dshm", "mountPath": "/dev/shm", "medium": "Memory", "sizeLimit": "2Gi"}
        ]


def test_kfp_without_gpu_has_no_request_and_no_toleration(tmp_path):
    opts = options(gpu_count=0, pretag_gpu_count=0, train_gpu_count=0, shm_size="0")
    path = Path(compile_kfp(str(tmp_path / "p.yaml"), opts))
    spec = _ir(path)
    for name in ("embed", "pretag", "train"):
        assert "accelerator" not in _executor(spec, f"comp-{name}")["resources"]
    assert len(docs(path)) == 1  # nothing left for kfp-kubernetes: no platform document at all


def test_kfp_cpu_only_pretag_keeps_the_embed_gpu(tmp_path):
    path = Path(compile_kfp(str(tmp_path / "p.yaml"), options(pretag_gpu_count=0)))
    spec = _ir(path)
    assert _executor(spec, "comp-embed")["resources"]["accelerator"]["resourceCount"] == "1"
    assert "accelerator" not in _executor(spec, "comp-pretag")["resources"]
    platform = _platform(path)
    assert "tolerations" in platform["exec-embed"] and "tolerations" not in platform["exec-pretag"]


def test_kfp_cluster_options_reach_the_spec(tmp_path):
    opts = options(
        registry="registry.example.com/team",
        gpu_count=2,
        gpu_toleration_key="dedicated",
        gpu_toleration_value="gpu",
        gpu_toleration_effect="NoExecute",
        shm_size="8Gi",
        cpu={"embed": "12"},
        memory={"select": "32Gi"},
        pod_labels={"team": "vision"},
        embed_shards=4,
    )
    path = Path(compile_kfp(str(tmp_path / "p.yaml"), opts))
    spec = _ir(path)
    embed = _executor(spec, "comp-embed")
    assert embed["image"] == f"registry.example.com/team/kurate-embed:{images.__version__}"
    assert embed["resources"]["accelerator"]["resourceCount"] == "2"
    assert embed["resources"]["resourceCpuRequest"] == "12"
    assert _executor(spec, "comp-select")["resources"]["resourceMemoryRequest"] == "32Gi"
    assert _executor(spec, "comp-check")["resources"]["resourceCpuRequest"] == "2"  # default kept
    assert spec["root"]["inputDefinitions"]["parameters"]["embed_shards"]["defaultValue"] == 4
    platform = _platform(path)
    assert platform["exec-embed"]["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}
    ]
    assert platform["exec-embed"]["emptyDirMounts"][0]["sizeLimit"] == "8Gi"
    assert {
        n for n, ex in platform.items() if ex.get("podMetadata", {}).get("labels") == {"team": "vision"}
    } == set(spec["deploymentSpec"]["executors"])


def test_registry_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KURATE_REGISTRY", "localhost:5000/k")
    monkeypatch.setenv("KURATE_GPU_COUNT", "0")
    assert main(["--out-dir", str(tmp_path), "--target", "kfp"]) == 0
    spec = _ir(tmp_path / FILES["kfp"][0])
    assert _executor(spec, "comp-ingest")["image"] == f"localhost:5000/k/kurate-ingest:{images.__version__}"
    assert "accelerator" not in _executor(spec, "comp-embed")["resources"]


def test_kfp_matches_golden(compiled):
    assert_matches_golden(compiled["kfp"], FILES["kfp"][0])


# --------------------------------------------------------------------------- vertex


def test_vertex_is_one_document_with_vertex_accelerators(compiled):
    d = docs(compiled["vertex"])
    assert len(d) == 1 and "platforms" not in d[0]
    embed = _executor(d[0], "comp-embed")["resources"]
    assert embed["accelerator"]["resourceType"] == "NVIDIA_TESLA_T4"
    assert embed["accelerator"]["resourceCount"] == "1"
    for name in ("comp-ingest", "comp-embed", "comp-merge", "comp-export"):
        res = _executor(d[0], name)["resources"]
        assert res["resourceCpuLimit"] and res["resourceMemoryLimit"], (
            f"{name}: Vertex sizes machines by limits"
        )


def test_vertex_accelerator_option(tmp_path):
    path = Path(
        compile_vertex(str(tmp_path / "v.yaml"), options(vertex_accelerator="NVIDIA_L4", gpu_count=2))
    )
    acc = _executor(docs(path)[0], "comp-embed")["resources"]["accelerator"]
    assert (acc["resourceType"], acc["resourceCount"]) == ("NVIDIA_L4", "2")


def _pipeline_job(path: Path, **kw):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    return aiplatform.PipelineJob(
        display_name="kurate-test",
        template_path=str(path),
        pipeline_root="gs://kurate-test-bucket/pipeline-root",
        project="kurate-test",
        location="us-central1",
        credentials=AnonymousCredentials(),
        **kw,
    )


def test_vertex_pipeline_job_loads_it_offline(compiled):
    params = {f"{t}_config": json.dumps({"phase": t, "n": 3}) for t in PHASES} | {"embed_shards": 2}
    job = _pipeline_job(compiled["vertex"], parameter_values=params, labels={"worker_id": "gpu-pool-a"})
    gca = job._gca_resource
    assert gca.display_name == "kurate-test" and dict(gca.labels) == {"worker_id": "gpu-pool-a"}
    spec = dict(gca.pipeline_spec)
    assert spec["pipelineInfo"]["name"] == "kurate-curation"
    runtime = gca.runtime_config
    assert runtime.gcs_output_directory == "gs://kurate-test-bucket/pipeline-root"
    got = {k: v for k, v in runtime.parameter_values.items()}
    assert json.loads(got["select_config"]) == {"phase": "select", "n": 3}  # the int stays an int
    assert got["embed_shards"] == 2


def test_vertex_loader_rejects_the_multi_document_kfp_file(compiled):
    """Why the vertex target exists: the kfp file's second (kfp-kubernetes) document breaks Vertex."""
    params = {f"{t}_config": "{}" for t in PHASES}
    with pytest.raises(yaml.YAMLError):
        _pipeline_job(compiled["kfp"], parameter_values=params)


def test_vertex_matches_golden(compiled):
    assert_matches_golden(compiled["vertex"], FILES["vertex"][0])
