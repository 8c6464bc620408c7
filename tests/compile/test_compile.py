"""The compiled KFP pipeline loads back in the kfp SDK with the right tasks, images and artifact types,
and matches the checked-in golden spec (volatile fields ignored)."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
import yaml

from kurate import images
from kurate.pipelines.compile import compile_kfp

GOLDEN = Path(__file__).parent / "golden" / "kurate-curation.yaml"
TASKS = ["ingest", "check", "train", "embed", "select", "export"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.delenv("KURATE_REGISTRY", raising=False)
    path = tmp_path_factory.mktemp("compiled") / "kurate-curation.yaml"
    compile_kfp(str(path))
    mp.undo()
    return path


def _spec(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_loads_back_in_kfp(compiled):
    from kfp import components

    comp = components.load_component_from_file(str(compiled))
    assert comp.name == "kurate-curation"
    assert set(comp.component_spec.inputs) == {f"{t}_config" for t in TASKS}


def test_tasks_images_and_dependencies(compiled):
    spec = _spec(compiled)
    dag = spec["root"]["dag"]["tasks"]
    assert sorted(dag) == sorted(TASKS)
    execs = spec["deploymentSpec"]["executors"]
    for t in TASKS:
        executor = spec["components"][dag[t]["componentRef"]["name"]]["executorLabel"]
        assert execs[executor]["container"]["image"] == images.image_for(t)
    assert set(dag["check"]["dependentTasks"]) == {"ingest"}
    assert set(dag["train"]["dependentTasks"]) == {"check"}
    assert set(dag["embed"]["dependentTasks"]) == {"check", "train"}
    assert dag["embed"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"] == {
        "outputArtifactKey": "model",
        "producerTask": "train",
    }
    assert set(dag["select"]["dependentTasks"]) == {"embed", "ingest"}
    assert set(dag["export"]["dependentTasks"]) == {"ingest", "check", "embed", "select"}
    assert (
        dag["ingest"]["cachingOptions"] == {}
        or dag["ingest"]["cachingOptions"].get("enableCache") is not True
    )


def test_artifact_types(compiled):
    spec = _spec(compiled)
    comps = spec["components"]

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
    assert out_types("comp-select") == {"selection": "system.Dataset"}
    ins = comps["comp-export"]["inputDefinitions"]
    assert set(ins["artifacts"]) == {"files", "clean", "corrupt", "duplicates", "embeddings", "selection"}
    assert ins["parameters"]["config"]["parameterType"] == "STRING"


def _normalise(text: str) -> str:
    spec = yaml.safe_load(text)
    spec.pop("sdkVersion", None)
    return yaml.safe_dump(spec, sort_keys=True)


def test_matches_golden(compiled):
    got, want = _normalise(compiled.read_text()), _normalise(GOLDEN.read_text())
    if got != want:
        diff = "\n".join(
            difflib.unified_diff(want.splitlines(), got.splitlines(), "golden", "compiled", lineterm="")
        )
        pytest.fail(
            "compiled pipeline differs from tests/compile/golden/kurate-curation.yaml; review the diff and "
            f"update it with `python -m tests.compile.update_golden`:\n{diff}"
        )
