"""KFP component: ingest (list the input samples)."""

from kfp import dsl

from kurate.deploy.images import image_for
from kurate.io.artifacts import FileListArtifact


@dsl.component(base_image=image_for("ingest"), install_kfp_package=False)
def ingest(config: str, files: dsl.Output[FileListArtifact]):
    """List the image files under the input (config: JSON of the ingest keys)."""
    import json

    from kurate.phases.ingest import run_ingest

    run_ingest(files.path, json.loads(config))
