"""KFP component: select (coreset, random, or Lightly's selection strategies)."""

from kfp import dsl

from kurate.deploy.images import image_for
from kurate.io.artifacts import EmbeddingsArtifact, FileListArtifact, PredictionsArtifact


@dsl.component(base_image=image_for("select"), install_kfp_package=False)
def select(
    config: str,
    embeddings: dsl.Input[EmbeddingsArtifact],
    files: dsl.Input[FileListArtifact],
    predictions: dsl.Input[PredictionsArtifact],
    clean: dsl.Input[FileListArtifact],
    selection: dsl.Output[FileListArtifact],
):
    """Choose a diverse subset of the embedded samples, weighted by the scorer when predictions exist."""
    import json

    from kurate.phases.select import run_select

    run_select(embeddings.path, files.path, selection.path, json.loads(config), predictions.path, clean.path)
