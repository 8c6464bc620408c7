"""Container image names, defined once: ``<registry>/kurate-<phase>:<package version>``."""

from __future__ import annotations

import os

from kurate import __version__

DEFAULT_REGISTRY = "ghcr.io/kurate"
PHASES = ("ingest", "check", "train", "embed", "select", "export")


def registry() -> str:
    """The registry prefix: env ``KURATE_REGISTRY`` or the default."""
    return os.environ.get("KURATE_REGISTRY", DEFAULT_REGISTRY).rstrip("/")


def image_for(phase: str) -> str:
    """The image that runs ``phase`` (its tag is the package version, so code and image never drift)."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    return f"{registry()}/kurate-{phase}:{__version__}"
