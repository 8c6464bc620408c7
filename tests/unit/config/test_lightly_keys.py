"""Every key Lightly ever had behaves as its status says (tests/lightly_configs/lightly_keys.yaml).

implemented: accepted silently; accepted with a warning (kurate.config.lightly_keys.INERT): exactly one
warning line naming the key and never its value; alias: sets the kurate key it names; not applicable: exit 2
naming the key and why; owned by another issue (OWNED): whatever that issue landed (here: accepted, or the
plain unknown-key error while it has not landed). Keys Lightly never had stay exit-2 errors.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import yaml

from kurate.config import lightly_keys
from kurate.config.load import compose_config
from kurate.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
KEYS_FILE = ROOT / "tests" / "lightly_configs" / "lightly_keys.yaml"
KEYS = [e["key"] for e in yaml.safe_load(KEYS_FILE.read_text())]
BASE = ["stopping_condition.n_samples=3"]


def _value_for(key: str) -> str:
    """A value of the right kind for ``key`` that differs from nothing in particular (the key is *given*)."""
    flags = ("force_start", "bypass_verify", "use_redirected_read_url", "pretagging_upload", "enable_upload")
    if key.endswith((*flags, "shutdown_when_job_finished", "exclude_parent_tag", "append", "download")):
        return "True"
    if key.endswith(("num_processes", "num_threads", "cache_size", "emb_upload_bsz", "days_to_expiration")):
        return "4"
    if key.endswith(("resize", "kernel_size", "crop_padding")):
        return "3"
    return "x-value-123"


def test_every_lightly_key_has_a_status():
    statuses = {key: lightly_keys.status(key) for key in KEYS}
    assert all(statuses.values()), [k for k, v in statuses.items() if not v]
    assert set(lightly_keys.INERT) <= set(KEYS)
    assert set(lightly_keys.ALIASES) <= set(KEYS)


@pytest.mark.parametrize("key", sorted(lightly_keys.INERT))
def test_inert_key_is_accepted_with_exactly_one_warning(key, caplog):
    value = _value_for(key)
    cfg = compose_config([*BASE, f"{key}={value}"])
    with caplog.at_level(logging.WARNING):
        given = lightly_keys.warn_inert(cfg)
    assert given == [key]
    lines = [r.getMessage() for r in caplog.records if key in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith(f"{key}: accepted, does nothing here")
    assert value not in lines[0]  # the value (a token, a path) is never printed
    assert "\n" not in lines[0]


def test_no_warning_without_inert_keys(caplog):
    with caplog.at_level(logging.WARNING):
        assert lightly_keys.warn_inert(compose_config(BASE)) == []
    assert not caplog.records


@pytest.mark.parametrize("alias,target", sorted(lightly_keys.ALIASES.items()))
def test_alias_sets_the_kurate_key(alias, target):
    cfg = compose_config([*BASE, f"{alias}=abc"])
    from omegaconf import OmegaConf

    assert OmegaConf.select(cfg, target) == "abc"
    with pytest.raises(ConfigError, match=re.escape(alias)):
        compose_config([*BASE, f"{alias}=abc", f"{target}=other"])


@pytest.mark.parametrize("key", sorted(lightly_keys.NOT_APPLICABLE))
def test_not_applicable_key_is_refused_with_why(key):
    with pytest.raises(ConfigError) as err:
        compose_config([*BASE, f"+{key}=1" if "." in key else f"{key}=1"])
    assert key.split(".")[0] in str(err.value)


@pytest.mark.parametrize(
    "key",
    [
        "sanity-check",  # Lightly's own docs draft typo: Lightly refused it
        "collate.input_size",  # lightly CLI keys without their lightly. prefix
        "loader.batch_size",
        "trainer.max_epochs",
        "datasource.id",
        "stopping_condition.enable_corruptness_check",
        "lightly.model.depth",
        "no_such_key",
    ],
)
def test_keys_lightly_never_had_stay_errors(key):
    with pytest.raises(ConfigError) as err:
        compose_config([*BASE, f"{key}=1"])
    assert err.value.exit_code == 2
    assert key in str(err.value)


def test_unprefixed_lightly_key_error_names_the_prefixed_one():
    with pytest.raises(ConfigError, match=r"lightly\.collate\.input_size"):
        compose_config([*BASE, "collate.input_size=64"])


def test_readme_lists_every_key_with_its_status():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Lightly keys", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `([^`]+)` \| ([^|]+) \|", line)
        if m:
            rows[m.group(1)] = m.group(2).strip()
    missing = [k for k in KEYS if k not in rows]
    assert not missing, missing
    for key in KEYS:
        assert rows[key] == lightly_keys.status(key), (key, rows[key])


def test_lightly_token_is_redacted():
    from kurate.config.load import redacted

    cfg = compose_config([*BASE, "lightly.token=SECRET-tok"])
    assert "SECRET-tok" not in yaml.safe_dump(redacted(cfg))
