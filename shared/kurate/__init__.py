"""kurate: Lightly-compatible data curation as a Kubeflow pipeline."""

__version__ = "0.1.0"
