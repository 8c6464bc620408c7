"""KFP component: select (coreset or random)."""

from kfp import dsl

from kurate.artifacts import EmbeddingsArtifact, FileListArtifact
from kurate.images import image_for


@dsl.component(base_image=image_for("select"), install_kfp_package=False)
def select(
    config: str,
    embeddings: dsl.Input[EmbeddingsArtifact],
    files: dsl.Input[FileListArtifact],
    selection: dsl.Output[FileListArtifact],
):
    """Choose a diverse subset of the embedded samples (config: JSON of the select keys)."""
    import json

    from kurate.phases.select import run_select

    run_select(embeddings.path, files.path, selection.path, json.loads(config))
