"""KFP component: embed (one feature vector per clean sample), or one shard of it."""

from kfp import dsl

from kurate.deploy.images import image_for
from kurate.io.artifacts import EmbeddingsArtifact, FileListArtifact, ModelArtifact, PredictionsArtifact


@dsl.component(base_image=image_for("embed"), install_kfp_package=False)
def embed(
    config: str,
    clean: dsl.Input[FileListArtifact],
    embeddings: dsl.Output[EmbeddingsArtifact],
    shard_index: int = 0,
    shard_count: int = 1,
    model: dsl.Input[ModelArtifact] = None,  # type: ignore[assignment]  # optional input (KFP: default None)
    predictions: dsl.Input[PredictionsArtifact] = None,  # type: ignore[assignment]  # optional input
):
    """Embed the clean samples, or their shard ``shard_index`` of ``shard_count`` (config: embed keys).

    ``model``: the train phase's output, if any. ``predictions``: the pretag phase's (object_level: the
    samples are the crops of their boxes).
    """
    import json

    from kurate.phases.embed import run_embed

    run_embed(
        clean.path,
        embeddings.path,
        json.loads(config),
        shard_index,
        shard_count,
        model.path if model is not None else "",
        predictions.path if predictions is not None else "",
    )
