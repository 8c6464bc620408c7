"""Lightly's pretagging requirements file (``{"person": 1}``, min_requirements.json), the built-in
detector it implies, kurate's own settings with ``classes``/``min_requirements``, and the plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kurate.config.load import compose_config
from kurate.errors import ConfigError
from kurate.models import coco, pretag
from kurate.plan import make_plan


def _file(tmp_path: Path, text: str, name: str = "min_requirements.json") -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


def test_lightlys_requirements_file_runs_the_builtin_detector(tmp_path):
    s = pretag.load_settings(_file(tmp_path, json.dumps({"person": 1, "car": 2})))
    assert s["builtin"] and s["architecture"] == coco.BUILTIN_ARCHITECTURE and s["weights"] == "coco"
    assert s["min_requirements"] == {"person": 1, "car": 2} and s["classes"] == list(coco.LIGHTLY_CLASSES)
    assert s["file"] == str(tmp_path / "min_requirements.json")
    assert pretag.load_settings(_file(tmp_path, "{}"))["min_requirements"] == {}  # no requirement at all
    assert pretag.load_settings("") == pretag.builtin_settings()  # pretagging=True alone


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"dog": 1}', "'dog': not a class of the detector; allowed: bicycle, bus, car, motorcycle"),
        ('{"person": -1}', "'person': got -1; allowed: an int >= 0"),
        ('{"person": "one"}', "source: got None; allowed: model, predictions (or a requirements file"),
        ('{"person": true}', "source: got None"),
        ("[1, 2]", "expected Lightly's requirements file ({class name: minimum count}) or kurate's settings"),
    ],
)
def test_a_bad_requirements_file_is_one_line_naming_the_class(tmp_path, text, says):
    with pytest.raises(ConfigError) as err:
        pretag.load_settings(_file(tmp_path, text))
    assert err.value.key == "pretagging_config" and says in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_own_settings_take_classes_and_requirements(tmp_path):
    (tmp_path / "det.pt").write_bytes(b"x")
    base = "source: model\narchitecture: fcos_tiny\ncheckpoint: det.pt\ncategories: [bg, circle, square]\n"
    s = pretag.load_settings(
        _file(tmp_path, base + "classes: [circle]\nmin_requirements: {circle: 2}\n", "s.yaml")
    )
    assert s["classes"] == ["circle"] and s["min_requirements"] == {"circle": 2} and "weights" not in s
    for extra, says in [
        ("classes: [triangle]\n", "classes: 'triangle' is not a class of the detector"),
        ("classes: [circle]\nmin_requirements: {square: 1}\n", "min_requirements.square: not a class"),
        ("min_requirements: {circle: 1.5}\n", "min_requirements.circle: got 1.5"),
        ("classes: circle\n", "classes: a list of class names"),
    ]:
        with pytest.raises(ConfigError, match=says):
            pretag.load_settings(_file(tmp_path, base + extra, "s.yaml"))
    coco_s = pretag.load_settings(_file(tmp_path, "source: model\narchitecture: ssd300_vgg16\n", "c.yaml"))
    assert coco_s["weights"] == "coco" and coco_s["categories"] == coco.categories()
    with pytest.raises(ConfigError, match="checkpoint: missing; fcos_tiny has no COCO weights"):
        pretag.load_settings(_file(tmp_path, "source: model\narchitecture: fcos_tiny\n", "c.yaml"))


def test_a_lightly_folders_schema_names_the_classes_at_start(tmp_path):
    task = tmp_path / "lightly" / ".lightly" / "predictions" / "det"
    task.mkdir(parents=True)
    (task.parent / "tasks.json").write_text('["det"]')
    cats = [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}]
    (task / "schema.json").write_text(json.dumps({"task_type": "object-detection", "categories": cats}))
    ok = f"source: predictions\npredictions: {tmp_path / 'lightly'}\nmin_requirements: {{dog: 1}}\n"
    assert pretag.load_settings(_file(tmp_path, ok, "p.yaml"))["min_requirements"] == {"dog": 1}
    with pytest.raises(
        ConfigError, match="min_requirements.cow: not a class of the detector; allowed: cat, dog"
    ):
        pretag.load_settings(_file(tmp_path, ok.replace("dog: 1", "cow: 1"), "p.yaml"))


def test_the_plan_runs_the_builtin_and_gives_the_requirements_to_select(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "min_requirements.json").write_text('{"person": 1}')
    base = [
        f"input_dir={tmp_path / 'in'}",
        f"output_dir={tmp_path / 'out'}",
        "stopping_condition.n_samples=3",
    ]
    plan = make_plan(compose_config([*base, "pretagging=True", "pretagging_config=min_requirements.json"]))
    pre, sel = plan.task_configs["pretag"], plan.task_configs["select"]
    assert (
        pre["settings"]["builtin"] and "min_requirements" not in pre["settings"]
    )  # editing them: select only
    assert sel["min_requirements"] == {"person": 1}
    alone = make_plan(compose_config([*base, "pretagging=True"]))  # Lightly's `pretagging=True` alone
    assert (
        alone.task_configs["pretag"]["settings"]["builtin"]
        and "min_requirements" not in alone.task_configs["select"]
    )
    with pytest.raises(ConfigError) as err:
        make_plan(
            compose_config(
                [
                    *base,
                    "pretagging=True",
                    "pretagging_config=min_requirements.json",
                    "selected_sequence_length=2",
                    "stopping_condition.n_samples=4",
                    "enable_corruptness_check=False",
                    "remove_exact_duplicates=False",
                ]
            )
        )
    assert err.value.key == "pretagging_config" and "selected_sequence_length=2" in str(err.value)
