"""selection_config and method=coral at start: the config file is read, checked and resolved by the plan."""

from __future__ import annotations

import json

import pytest

from kurate.config.load import compose_config
from kurate.errors import ConfigError
from kurate.plan import make_plan
from tests.lightly_selection_examples import EXAMPLES

DIVERSITY = {
    "n_samples": 5,
    "strategies": [{"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}}],
}


def _compose(tmp_path, *extra, yaml_text: str | None = None):
    (tmp_path / "in").mkdir(exist_ok=True)
    args = [f"input_dir={tmp_path / 'in'}", f"output_dir={tmp_path / 'out'}", *extra]
    if yaml_text is None:
        return compose_config(args)
    (tmp_path / "run.yaml").write_text(yaml_text)
    return compose_config(args, config_path=str(tmp_path), config_name="run")


def _predictions(base, task="my_object_detection_task", task_type="object-detection"):
    root = base / ".lightly" / "predictions"
    (root / task).mkdir(parents=True, exist_ok=True)
    (root / "tasks.json").write_text(json.dumps([task]))
    (root / task / "schema.json").write_text(
        json.dumps({"task_type": task_type, "categories": [{"id": 0, "name": "car"}]})
    )
    return root


def test_a_selection_config_file_is_read_resolved_and_handed_to_select(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sel.json").write_text(json.dumps(DIVERSITY))
    plan = make_plan(_compose(tmp_path, "selection_config=sel.json"))
    sel = plan.task_configs["select"]
    assert sel["selection_config"]["n_samples"] == 5
    assert sel["selection_config"]["strategies"][0]["strategy"]["type"] == "DIVERSITY"
    assert sel["selection_sources"] == {}


def test_inline_in_a_yaml_config_with_lightlys_worker_sections(tmp_path):
    text = (
        "worker_config:\n  enable_corruptness_check: true\n  remove_exact_duplicates: false\n"
        "lightly_config:\n  loader: {batch_size: 8}\n"
        f"selection_config: {json.dumps(DIVERSITY)}\n"
    )
    cfg = _compose(tmp_path, yaml_text=text)
    assert cfg.remove_exact_duplicates is False and cfg.lightly.loader.batch_size == 8
    plan = make_plan(cfg)
    assert plan.task_configs["select"]["selection_config"]["strategies"][0]["input"]["type"] == "EMBEDDINGS"


@pytest.mark.parametrize(
    "extra, named",
    [
        (["method=random"], "method"),
        (["stopping_condition.n_samples=3"], "stopping_condition.n_samples"),
        (["stopping_condition.min_distance=0.2"], "stopping_condition.min_distance"),
    ],
)
def test_selection_config_with_method_or_stopping_condition_is_exit_2_naming_both(tmp_path, extra, named):
    with pytest.raises(ConfigError) as err:
        _compose(tmp_path, *extra, yaml_text=f"selection_config: {json.dumps(DIVERSITY)}\n")
    assert err.value.key == "selection_config" and named in err.value.message
    assert err.value.exit_code == 2


def test_a_bad_value_in_the_file_names_its_key(tmp_path):
    bad = {
        "n_samples": 5,
        "strategies": [
            {
                "input": {"type": "METADATA", "key": "lightly.sharpness"},
                "strategy": {"type": "THRESHOLD", "threshold": 1, "operation": "MORE"},
            }
        ],
    }
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sel.yaml").write_text(json.dumps(bad))
    with pytest.raises(ConfigError) as err:
        make_plan(_compose(tmp_path, "selection_config=sel.yaml"))
    assert err.value.key == "selection_config.strategies[0].strategy.operation"
    with pytest.raises(ConfigError, match="does not exist"):
        make_plan(_compose(tmp_path, "selection_config=missing.yaml"))


def test_tasks_and_metadata_are_found_or_refused_at_start(tmp_path):
    active = next(c for s, c in EXAMPLES if "'Active Learning'" in s)
    text = f"selection_config: {json.dumps(active)}\n"
    with pytest.raises(ConfigError, match="no Lightly predictions folder"):
        make_plan(_compose(tmp_path, yaml_text=text))
    root = _predictions(tmp_path / "in")  # Lightly's layout beside the input
    plan = make_plan(_compose(tmp_path, yaml_text=text))
    assert plan.task_configs["select"]["selection_sources"]["predictions"] == str(root)
    pretag = next(c for s, c in EXAMPLES if "'Object Balancing'" in s)
    with pytest.raises(ConfigError, match="pretagging=True"):
        make_plan(_compose(tmp_path, yaml_text=f"selection_config: {json.dumps(pretag)}\n"))
    meta = next(c for s, c in EXAMPLES if "'Metadata Balancing'" in s)
    with pytest.raises(ConfigError) as err:
        make_plan(_compose(tmp_path, yaml_text=f"selection_config: {json.dumps(meta)}\n"))
    assert err.value.key == "custom_metadata"
    (tmp_path / "in" / ".lightly" / "metadata").mkdir(parents=True)
    plan = make_plan(_compose(tmp_path, yaml_text=f"selection_config: {json.dumps(meta)}\n"))
    assert plan.task_configs["select"]["selection_sources"]["custom_metadata"].endswith(".lightly/metadata")
    sharp = next(c for s, c in EXAMPLES if "'Metadata Thresholding'" in s)
    with pytest.raises(ConfigError) as err:
        make_plan(
            _compose(
                tmp_path,
                "enable_corruptness_check=False",
                yaml_text=f"selection_config: {json.dumps(sharp)}\n",
            )
        )
    assert err.value.key == "enable_corruptness_check"


def test_coral_needs_a_task_or_a_column(tmp_path):
    with pytest.raises(ConfigError) as err:
        make_plan(_compose(tmp_path, "method=coral", "stopping_condition.n_samples=3"))
    assert err.value.key == "active_learning.task_name"
    _predictions(tmp_path / "in", task="my-classification-task", task_type="classification")
    plan = make_plan(
        _compose(
            tmp_path,
            "method=coral",
            "stopping_condition.n_samples=3",
            "active_learning.task_name=my-classification-task",
            "active_learning.score_name=uncertainty_margin",
        )
    )
    sel = plan.task_configs["select"]
    assert sel["method"] == "coral" and sel["active_learning"]["task_name"] == "my-classification-task"
    with pytest.raises(ConfigError) as err:
        make_plan(
            _compose(
                tmp_path,
                "method=coral",
                "stopping_condition.n_samples=3",
                "active_learning_score_column_name=al_score",
            )
        )
    assert err.value.key == "active_learning_score_column_name"


@pytest.mark.parametrize("store", ["s3", "gcs"])
def test_the_config_file_and_the_predictions_folder_may_be_in_a_bucket(tmp_path, store, request):
    from kurate.selection import sources

    srv = request.getfixturevalue(store)
    bucket = srv.bucket()
    scheme = "s3" if store == "s3" else "gs"
    active = next(c for s, c in EXAMPLES if "'Active Learning'" in s)
    srv.put(bucket, "cfg/sel.json", json.dumps(active).encode())
    local = _predictions(tmp_path / "lightly")
    (local / "my_object_detection_task" / "a.json").write_text(
        json.dumps(
            {
                "file_name": "a.png",
                "predictions": [{"category_id": 0, "score": 0.6, "probabilities": [0.6, 0.4]}],
            }
        )
    )
    srv.upload_folder(tmp_path / "lightly", bucket, "ds")
    settings = tmp_path / "out" / "pretag.yaml"
    settings.parent.mkdir(parents=True)
    settings.write_text(f"source: predictions\npredictions: {scheme}://{bucket}/ds\n")
    plan = make_plan(
        _compose(
            tmp_path,
            f"selection_config={scheme}://{bucket}/cfg/sel.json",
            "pretagging=True",
            "pretagging_config=pretag.yaml",
        )
    )
    sel = plan.task_configs["select"]
    root = sel["selection_sources"]["predictions"]
    assert root == f"{scheme}://{bucket}/ds/.lightly/predictions"
    assert sel["selection_config"]["strategies"][0]["input"]["score"] == "uncertainty_entropy"
    task = sources.read_task_folder(root, "my_object_detection_task", ["a.png", "b.png"])
    assert task.records[0][0]["probabilities"] == [0.6, 0.4] and task.records[1] is None and task.missing == 1
