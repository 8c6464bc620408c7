"""selection_config: every Lightly-documented example parses; every bad value is one line naming the key."""

from __future__ import annotations

import copy

import pytest

from kurate.errors import ConfigError
from kurate.selection import spec as sp
from tests.lightly_selection_examples import EXAMPLES


@pytest.mark.parametrize("source, config", EXAMPLES, ids=[s for s, _ in EXAMPLES])
def test_every_documented_example_parses_unchanged(source, config):
    original = copy.deepcopy(config)
    parsed = sp.parse(config)
    assert config == original  # never mutated
    assert len(parsed.entries) == len(config["strategies"])
    for entry, raw in zip(parsed.entries, config["strategies"], strict=True):
        assert entry.input.type == raw["input"]["type"]
        assert entry.strategy.type == raw["strategy"]["type"]
        assert entry.strategy.strength == raw["strategy"].get("strength", 1.0)


def test_the_parsed_spec_keeps_every_documented_value():
    by_source = dict(EXAMPLES)
    bal = sp.parse(next(c for s, c in EXAMPLES if "Object Balancing" in s))
    assert dict(bal.entries[0].strategy.target)["bicycle"] == 0.5
    assert bal.entries[0].input.task == "lightly_pretagging" and bal.tasks() == ["lightly_pretagging"]
    thr = sp.parse(next(c for s, c in EXAMPLES if "'Metadata Thresholding'" in s)).entries[0]
    assert (thr.strategy.threshold, thr.strategy.operation, thr.input.key) == (
        20.0,
        "BIGGER",
        "lightly.sharpness",
    )
    div = sp.parse(next(c for s, c in by_source.items() if "Cityscapes" in s))
    assert div.proportion_samples == 1.0 and div.n_samples is None
    assert div.entries[0].strategy.min_distance == 0.2
    # camelCase aliases of Lightly's API models work too
    alias = sp.parse(
        {
            "nSamples": 5,
            "strategies": [{"input": {"type": "RANDOM", "randomSeed": 3}, "strategy": {"type": "WEIGHTS"}}],
        }
    )
    assert alias.n_samples == 5 and alias.entries[0].input.random_seed == 3


def _cfg(inp, strat, **top):
    return {"n_samples": 10, **top, "strategies": [{"input": inp, "strategy": strat}]}


EMB = {"type": "EMBEDDINGS"}
META = {"type": "METADATA", "key": "lightly.sharpness"}


@pytest.mark.parametrize(
    "config, key, words",
    [
        (
            {"strategies": [{"input": EMB, "strategy": {"type": "DIVERSITY"}}]},
            "selection_config",
            "n_samples",
        ),
        (_cfg(EMB, {"type": "DIVERSITY"}, proportion_samples=0.5), "selection_config", "not both"),
        (_cfg(EMB, {"type": "DIVERSITY"}, n_samples=0), "selection_config.n_samples", "int >= 1"),
        ({"proportion_samples": 1.5, "strategies": []}, "selection_config.proportion_samples", "(0, 1]"),
        ({"n_samples": 3, "strategies": []}, "selection_config.strategies", "empty"),
        (
            _cfg({"type": "PIXELS"}, {"type": "DIVERSITY"}),
            "selection_config.strategies[0].input.type",
            "EMBEDDINGS",
        ),
        (_cfg(EMB, {"type": "CORESET"}), "selection_config.strategies[0].strategy.type", "DIVERSITY"),
        (_cfg(META, {"type": "DIVERSITY"}), "selection_config.strategies[0].input.type", "takes EMBEDDINGS"),
        (_cfg(EMB, {"type": "WEIGHTS"}), "selection_config.strategies[0].input.type", "cannot be used"),
        (
            _cfg(META, {"type": "THRESHOLD", "threshold": 20}),
            "selection_config.strategies[0].strategy.operation",
            "BIGGER",
        ),
        (
            _cfg(META, {"type": "THRESHOLD", "operation": "BIGGER"}),
            "selection_config.strategies[0].strategy.threshold",
            "missing",
        ),
        (
            _cfg(META, {"type": "THRESHOLD", "threshold": 2, "operation": "GREATER"}),
            "selection_config.strategies[0].strategy.operation",
            "BIGGER_EQUAL",
        ),
        (
            _cfg(META, {"type": "BALANCE", "target": {"a": 0.7, "b": 0.6}}),
            "selection_config.strategies[0].strategy.target",
            "sum to 1.3",
        ),
        (
            _cfg(META, {"type": "BALANCE", "target": {"a": -0.1}}),
            "selection_config.strategies[0].strategy.target.a",
            "[0, 1]",
        ),
        (_cfg(META, {"type": "BALANCE"}), "selection_config.strategies[0].strategy.target", "UNIFORM"),
        (
            _cfg(META, {"type": "BALANCE", "distribution": "UNIFORM", "target": {"a": 1}}),
            "selection_config.strategies[0].strategy.target",
            "implied",
        ),
        (
            _cfg(EMB, {"type": "DIVERSITY", "strength": -1}),
            "selection_config.strategies[0].strategy.strength",
            ">= 0",
        ),
        (
            _cfg(EMB, {"type": "DIVERSITY", "strength": 2e9}),
            "selection_config.strategies[0].strategy.strength",
            "1e+09",
        ),
        (
            _cfg(EMB, {"type": "DIVERSITY", "stopping_condition_minimum_distance": -0.1}),
            "selection_config.strategies[0].strategy.stopping_condition_minimum_distance",
            ">= 0",
        ),
        (
            _cfg(EMB, {"type": "TYPICALITY", "num_nearest_neighbors": 1}),
            "selection_config.strategies[0].strategy.num_nearest_neighbors",
            ">= 2",
        ),
        (
            _cfg(EMB, {"type": "TYPICALITY", "stopping_condition_minimum_typicality": 0}),
            "selection_config.strategies[0].strategy.stopping_condition_minimum_typicality",
            "> 0",
        ),
        (_cfg(EMB, {"type": "SIMILARITY"}), "selection_config.strategies[0].input", "query"),
        (
            _cfg({"type": "SCORES", "task": "t", "score": "loss"}, {"type": "WEIGHTS"}),
            "selection_config.strategies[0].input.score",
            "uncertainty_margin",
        ),
        (
            _cfg({"type": "SCORES", "score": "uncertainty_margin"}, {"type": "WEIGHTS"}),
            "selection_config.strategies[0].input.task",
            "missing",
        ),
        (
            _cfg({"type": "PREDICTIONS", "task": "t", "name": "CLASS_DISTRIBUTION"}, {"type": "WEIGHTS"}),
            "selection_config.strategies[0].input.name",
            "CATEGORY_COUNT",
        ),
        (
            _cfg(EMB, {"type": "DIVERSITY", "colour": 1}),
            "selection_config.strategies[0].strategy.colour",
            "unknown key",
        ),
        (
            _cfg({"type": "METADATA"}, {"type": "WEIGHTS"}),
            "selection_config.strategies[0].input.key",
            "missing",
        ),
        (
            _cfg(EMB, {"type": "DIVERSITY"}, lightly_path_regex="x"),
            "selection_config.lightly_path_regex",
            "not supported",
        ),
        (
            _cfg({"type": "EMBEDDINGS", "task": "objs"}, {"type": "DIVERSITY"}),
            "selection_config.strategies[0].input.task",
            "object_level",
        ),
        (
            {"n_samples": 3, "strategies": [{"input": EMB}]},
            "selection_config.strategies[0].strategy",
            "missing",
        ),
    ],
)
def test_bad_configs_fail_with_one_line_naming_the_key(config, key, words):
    with pytest.raises(ConfigError) as err:
        sp.parse(config)
    assert err.value.key == key, str(err.value)
    assert words in err.value.message and "\n" not in str(err.value)


def test_a_stopping_condition_alone_is_a_budget():
    s = sp.parse(
        {
            "strategies": [
                {"input": EMB, "strategy": {"type": "DIVERSITY", "stopping_condition_minimum_distance": 0.3}}
            ]
        }
    )
    assert s.n_samples is None and s.entries[0].strategy.min_distance == 0.3


def test_coral_is_diversity_times_the_active_learning_score():
    s = sp.coral_spec(10, 0.1, "my-classification-task", "uncertainty_margin")
    assert [e.strategy.type for e in s.entries] == ["DIVERSITY", "WEIGHTS"]
    assert s.entries[0].strategy.min_distance == 0.1
    assert (s.entries[1].input.task, s.entries[1].input.score) == (
        "my-classification-task",
        "uncertainty_margin",
    )
    col = sp.coral_spec(10, None, "", "", column="al_score")
    assert col.entries[1].input.column == "al_score" and col.source == "method=coral"
    with pytest.raises(ConfigError, match="active_learning.task_name"):
        sp.coral_spec(10, None, "", "")
    with pytest.raises(ConfigError, match="active_learning.score_name"):
        sp.coral_spec(10, None, "t", "loss")


def test_to_dict_round_trips_through_parse():
    for _source, config in EXAMPLES:
        s = sp.parse(config)
        again = sp.parse(s.to_dict())
        assert again == s
