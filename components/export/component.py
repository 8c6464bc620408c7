"""KFP component: export (the run's outputs in Lightly's layout)."""

from kfp import dsl

from kurate.deploy.images import image_for
from kurate.io.artifacts import EmbeddingsArtifact, FileListArtifact, PredictionsArtifact


@dsl.component(base_image=image_for("export"), install_kfp_package=False)
def export(
    config: str,
    files: dsl.Input[FileListArtifact],
    clean: dsl.Input[FileListArtifact],
    corrupt: dsl.Input[FileListArtifact],
    duplicates: dsl.Input[FileListArtifact],
    embeddings: dsl.Input[EmbeddingsArtifact],
    selection: dsl.Input[FileListArtifact],
    predictions: dsl.Input[PredictionsArtifact],
):
    """Write file lists, embeddings CSVs, dumped images and report.json (config: JSON of the export keys)."""
    import json

    from kurate.phases.export import run_export

    run_export(
        files.path,
        clean.path,
        corrupt.path,
        duplicates.path,
        embeddings.path,
        selection.path,
        json.loads(config),
        predictions.path,
    )
