"""KFP component: pretag (object predictions per sample; an inactive artifact when pretagging=False)."""

from kfp import dsl

from kurate.deploy.images import image_for
from kurate.io.artifacts import FileListArtifact, PredictionsArtifact


@dsl.component(base_image=image_for("pretag"), install_kfp_package=False)
def pretag(
    config: str,
    clean: dsl.Input[FileListArtifact],
    predictions: dsl.Output[PredictionsArtifact],
):
    """Predict objects in the samples (config: JSON of the pretag keys and the settings file's content)."""
    import json

    from kurate.phases.pretag import run_pretag

    run_pretag(clean.path, predictions.path, json.loads(config))
