"""Shared by the compile tests: default options that ignore this shell's KURATE_* variables, YAML
loading, and the golden comparison with a readable diff."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pytest
import yaml

from kurate.deploy.cluster import ClusterOptions, from_sources

GOLDEN = Path(__file__).parent / "golden"
PHASES = ["ingest", "check", "train", "embed", "pretag", "select", "export"]


def options(**overrides: Any) -> ClusterOptions:
    """Cluster options from the defaults and ``overrides`` only."""
    return from_sources(environ={}, **overrides)


def docs(path: Path) -> list[dict]:
    """Every YAML document of a compiled file."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _normalise(path: Path) -> str:
    out = []
    for doc in docs(path):
        doc.pop("sdkVersion", None)  # volatile: the kfp version that compiled it
        out.append(yaml.safe_dump(doc, sort_keys=True))
    return "---\n".join(out)


def assert_matches_golden(compiled: Path, golden_rel: str) -> None:
    """Fail with a unified diff when ``compiled`` differs from the checked-in golden file."""
    golden = GOLDEN / golden_rel
    got, want = _normalise(compiled), _normalise(golden)
    if got != want:
        diff = "\n".join(
            difflib.unified_diff(
                want.splitlines(), got.splitlines(), f"golden/{golden_rel}", "compiled", lineterm="", n=2
            )
        )
        pytest.fail(
            f"compiled pipeline differs from tests/compile/golden/{golden_rel}; review the diff and "
            f"update it with `python -m tests.compile.update_golden`:\n{diff}"
        )
