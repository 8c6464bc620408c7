"""KFP component: train (self-supervised SimCLR on the clean samples; a marker when training is off)."""

from kfp import dsl

from kurate.deploy.images import image_for
from kurate.io.artifacts import FileListArtifact, ModelArtifact


@dsl.component(base_image=image_for("train"), install_kfp_package=False)
def train(config: str, clean: dsl.Input[FileListArtifact], model: dsl.Output[ModelArtifact]):
    """Train the model on the clean samples (config: JSON of the train keys)."""
    import json

    from kurate.phases.train import run_train

    run_train(clean.path, model.path, json.loads(config))
