"""Values that used to pass validation and crash later: every numeric key has a finite, sane range;
interpolation errors, odd names, alias bombs and tokens are one-line config errors (exit 2) at start."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from omegaconf import OmegaConf

from kurate.config import load
from kurate.config.schema import KurateConfig
from kurate.errors import ConfigError

OK = ["stopping_condition.n_samples=10"]

#: Numeric keys whose schema type is ``Any`` (they also take lists or strings): checked like the others.
NUMERIC_ANY = ("stopping_condition.n_samples", "output_image_size", "lightly.collate.rr_degrees")


def numeric_leaves(cls: type = KurateConfig, prefix: str = "") -> dict[str, type]:
    """Every int/float key of the schema (dotted name → type), found from the dataclasses themselves."""
    out: dict[str, type] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name, hint = f"{prefix}{f.name}", hints[f.name]
        if dataclasses.is_dataclass(hint):
            out.update(numeric_leaves(hint, f"{name}."))  # type: ignore[arg-type]
        elif hint in (int, float):
            out[name] = hint
    return out


def refused(overrides: list[str]) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load.compose_config([*OK, *overrides])
    assert "\n" not in str(err.value)
    return err.value


def test_the_schema_walk_finds_the_numeric_keys():
    keys = numeric_leaves()
    assert {
        "lightly.model.width",
        "lightly.seed",
        "memory_requirement_in_GB",
        "lightly.collate.input_size",
    } <= set(keys)
    assert "input_dir" not in keys and "lightly.loader.shuffle" not in keys  # bools are not numbers


@pytest.mark.parametrize("key", sorted([*numeric_leaves(), *NUMERIC_ANY]))
def test_every_numeric_key_refuses_non_finite_and_absurd_values(key):
    """inf, nan and astronomically large values fail at start with one line naming the key."""
    for bad in ("inf", "-inf", "nan", "1e300", "1000000000000000000000"):
        err = refused([f"{key}={bad}"])
        assert err.key == key, (key, bad, str(err))
    load.compose_config(OK)  # the defaults themselves are inside every range


@pytest.mark.parametrize(
    "override",
    [
        # from the issue: each passed validation and crashed after the work had started
        "memory_requirement_in_GB=inf",
        "lightly.model.width=inf",
        "lightly.model.width=1e-9",
        "lightly.model.num_ftrs=100000000000",
        "lightly.collate.input_size=100000000",
        "lightly.seed=4294967296",
        "lightly.seed=-1",
        "lightly.criterion.temperature=1e-300",
        "lightly.optimizer.lr=1e300",
        "lightly.loader.batch_size=100000000000",
        "output_image_size=100000000",
        "output_image_size=[10,100000000]",
        "stopping_condition.n_samples=100000000000000000000",
        "lightly.collate.sigmas=[1,inf]",
    ],
)
def test_values_that_crashed_later_are_refused_at_start(override):
    err = refused([override])
    assert err.key == override.split("=", 1)[0]
    assert "allowed" in str(err)


def test_sane_values_near_the_limits_are_accepted():
    cfg = load.compose_config(
        [
            *OK,
            "lightly.seed=4294967295",
            "lightly.model.width=0.125",
            "lightly.collate.input_size=1024",
            "lightly.model.num_ftrs=2048",
            "memory_requirement_in_GB=512",
            "output_image_size=[4096,8192]",
        ]
    )
    assert cfg.lightly.seed == 2**32 - 1


@pytest.mark.parametrize(
    "override, key",
    [
        ("output_dir=${oc.env:KURATE_TEST_UNSET_VARIABLE}", "output_dir"),
        ("input_dir=${no_such_key}", "input_dir"),
        ("lightly.loader.batch_size=${oc.env:KURATE_TEST_UNSET_VARIABLE}", "lightly.loader.batch_size"),
    ],
)
def test_interpolation_errors_are_one_line_config_errors(override, key, monkeypatch):
    monkeypatch.delenv("KURATE_TEST_UNSET_VARIABLE", raising=False)
    err = refused([override])
    assert err.key == key
    assert "interpolation" in str(err).lower() or "KURATE_TEST_UNSET_VARIABLE" in str(err)


def test_interpolation_error_in_a_config_file(tmp_path, monkeypatch):
    monkeypatch.delenv("KURATE_TEST_UNSET_VARIABLE", raising=False)
    (tmp_path / "job.yaml").write_text("output_dir: ${oc.env:KURATE_TEST_UNSET_VARIABLE}\n")
    with pytest.raises(ConfigError) as err:
        load.compose_config(OK, str(tmp_path), "job")
    assert err.value.key == "output_dir"


def test_interpolations_that_resolve_still_work(monkeypatch):
    monkeypatch.setenv("KURATE_TEST_OUT", "/data/out")
    cfg = load.compose_config([*OK, "output_dir=${oc.env:KURATE_TEST_OUT}"])
    assert cfg.output_dir == "/data/out"


@pytest.mark.parametrize("name", ["..", ".", " ", "a\\b", "a\x00b"])
def test_datapool_names_that_are_not_a_folder_name_are_refused(name):
    assert refused([f"datapool.name='{name}'"]).key == "datapool.name"


@pytest.mark.parametrize("value", [".", "..", "[a,b]", "true", "a/./b", "a//b", "{x: 1}", "a/../b", "/abs"])
def test_run_directory_must_be_a_relative_folder_name(value):
    assert refused([f"run_directory={value}"]).key == "run_directory"


@pytest.mark.parametrize("value", ["r1", "runs/2024/r1", "2024"])
def test_run_directory_good_names(value):
    load.compose_config([*OK, f"run_directory={value}"])


def _alias_bomb(levels: int = 9, fan: int = 10) -> str:
    """A few hundred bytes of YAML whose aliases expand to fan**levels nodes (10**9 here)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan)}]")
    lines.append(f"lightly: {{seed: 1, extra: *a{levels - 1}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(60)
def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    text = _alias_bomb()
    assert len(text) < 2048
    (tmp_path / "bomb.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load.compose_config(OK, str(tmp_path), "bomb")
    assert err.value.key == "--config-name"
    assert "nodes" in str(err.value)


def test_a_normal_config_file_with_anchors_is_fine(tmp_path):
    (tmp_path / "job.yaml").write_text(
        "common: &c {batch_size: 8, num_workers: 0}\nlightly:\n  loader: *c\n"
        "stopping_condition:\n  n_samples: 5\n"
    )
    # `common` is not a key: refused as unknown, not as too large
    with pytest.raises(ConfigError) as err:
        load.compose_config([], str(tmp_path), "job")
    assert err.value.key == "common"


# --------------------------------------------------------------------------- the token


@pytest.mark.parametrize(
    "token",
    [
        "Tk9Zq,part2",
        "abcDEF0123==",
        "abc=",
        "it's",
        'say"hi"',
        "a#b",
        "a(b)",
        "a[b]",
        "a{b}",
        "~tilde",
        "a${b}",
        "a b",
        "a\\b",
        "-leading-dash",
    ],
)
def test_any_token_can_be_passed_literally_and_is_never_echoed(token):
    cfg = load.compose_config([*OK, f"token={token}"])
    assert cfg.token == token
    assert cfg.token == token and load.redacted(cfg)["token"] == load.REDACTED
    with pytest.raises(ConfigError) as err:  # another key is wrong: the error must not show the token
        load.compose_config([*OK, f"token={token}", "no_such_key=1"])
    assert token not in str(err.value)


def test_token_from_the_command_line_beats_the_environment():
    cfg = load.compose_config([*OK, "token=from-cli=="], environ={"LIGHTLY_TOKEN": "from-env"})
    assert cfg.token == "from-cli=="
    assert load.compose_config(OK, environ={"LIGHTLY_TOKEN": "from-env=="}).token == "from-env=="


def test_the_saved_config_never_holds_the_token():
    cfg = load.compose_config([*OK, "token=abc,def=="])
    assert "abc,def" not in load.to_yaml(load.redacted(cfg))
    assert OmegaConf.select(cfg, "token") == "abc,def=="
