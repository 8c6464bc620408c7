"""KFP component: embed (one feature vector per clean sample)."""

from kfp import dsl

from kurate.artifacts import EmbeddingsArtifact, FileListArtifact, ModelArtifact
from kurate.images import image_for


@dsl.component(base_image=image_for("embed"), install_kfp_package=False)
def embed(
    config: str,
    clean: dsl.Input[FileListArtifact],
    embeddings: dsl.Output[EmbeddingsArtifact],
    model: dsl.Input[ModelArtifact] = None,  # type: ignore[assignment]  # optional input (KFP: default None)
):
    """Embed the clean samples (config: JSON of the embed keys; model: the train phase's output, if any)."""
    import json

    from kurate.phases.embed import run_embed

    run_embed(clean.path, embeddings.path, json.loads(config), model.path if model is not None else "")
