"""Shared plumbing for the ``python -m kurate.phases.<phase>`` entry points (what a plain Argo step runs)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from kurate.errors import KurateError


def parse(
    argv: Sequence[str],
    description: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    optional_inputs: dict[str, str] | None = None,
    options: dict[str, tuple[type, Any, str]] | None = None,
) -> argparse.Namespace:
    """Parse ``--<input> PATH ... --<output> PATH ... --config JSON``.

    ``optional_inputs`` adds input artifacts that may be left out (``{name: help}``, default ''),
    ``options`` typed flags (``{name: (type, default, help)}``).
    """
    p = argparse.ArgumentParser(description=description)
    for name in inputs:
        p.add_argument(
            f"--{name.replace('_', '-')}", dest=name, required=True, help=f"input artifact: {name}"
        )
    for name, text in (optional_inputs or {}).items():
        p.add_argument(
            f"--{name.replace('_', '-')}", dest=name, default="", help=f"optional input artifact: {text}"
        )
    for name in outputs:
        p.add_argument(
            f"--{name.replace('_', '-')}", dest=name, required=True, help=f"output artifact: {name}"
        )
    for name, (typ, default, text) in (options or {}).items():
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=typ, default=default, help=text)
    p.add_argument("--config", default="{}", help="this phase's config keys as JSON (or @file.json)")
    return p.parse_args(list(argv))


def load_json_arg(value: str) -> dict[str, Any]:
    """A JSON object given inline or as ``@path``."""
    if value.startswith("@"):
        with open(value[1:], encoding="utf-8") as fh:
            value = fh.read()
    data = json.loads(value)
    if not isinstance(data, dict):
        raise KurateError("--config must be a JSON object")
    return data


def run_main(fn: Callable[[], Any]) -> int:
    """Run a phase, turning kurate errors into one line and an exit code (no traceback)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        fn()
    except KurateError as exc:
        print(f"kurate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
