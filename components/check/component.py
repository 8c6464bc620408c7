"""KFP component: check (corrupt files and exact duplicates)."""

from kfp import dsl

from kurate.deploy.images import image_for
from kurate.io.artifacts import FileListArtifact


@dsl.component(base_image=image_for("check"), install_kfp_package=False)
def check(
    config: str,
    files: dsl.Input[FileListArtifact],
    clean: dsl.Output[FileListArtifact],
    corrupt: dsl.Output[FileListArtifact],
    duplicates: dsl.Output[FileListArtifact],
):
    """Split the file list into clean, corrupt and duplicate lists (config: JSON of the check keys)."""
    import json

    from kurate.phases.check import run_check

    run_check(files.path, clean.path, corrupt.path, duplicates.path, json.loads(config))
