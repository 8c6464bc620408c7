"""The curation DAG: ingest → check → train → embed → select → export, wired by typed artifacts.

Each task receives only its own keys, as a JSON string (a KFP ``dict`` parameter would turn the
int ``n_samples=3`` into the float ``3.0``, which means a fraction).
"""

from kfp import dsl

from kurate.components.check.component import check
from kurate.components.embed.component import embed
from kurate.components.export.component import export
from kurate.components.ingest.component import ingest
from kurate.components.select.component import select
from kurate.components.train.component import train

PIPELINE_NAME = "kurate-curation"


@dsl.pipeline(
    name=PIPELINE_NAME, description="Lightly-compatible data curation: dedup, embed, coreset, export."
)
def curation_pipeline(
    ingest_config: str,
    check_config: str,
    train_config: str,
    embed_config: str,
    select_config: str,
    export_config: str,
):
    """The whole curation run; each ``*_config`` is the JSON of that phase's keys (see kurate.plan)."""
    listed = ingest(config=ingest_config).set_display_name("ingest")
    listed.set_caching_options(False)  # never cached: a grown input folder must always be seen
    checked = check(config=check_config, files=listed.outputs["files"]).set_display_name("check")
    # train always runs: with enable_training off it only writes a "not trained" marker, so the DAG has
    # one shape on every target (kfp.local, KFP, Vertex, Argo) and embed's model input is always bound.
    trained = train(config=train_config, clean=checked.outputs["clean"]).set_display_name("train")
    embedded = embed(
        config=embed_config, clean=checked.outputs["clean"], model=trained.outputs["model"]
    ).set_display_name("embed")
    selected = select(
        config=select_config, embeddings=embedded.outputs["embeddings"], files=listed.outputs["files"]
    ).set_display_name("select")
    exported = export(
        config=export_config,
        files=listed.outputs["files"],
        clean=checked.outputs["clean"],
        corrupt=checked.outputs["corrupt"],
        duplicates=checked.outputs["duplicates"],
        embeddings=embedded.outputs["embeddings"],
        selection=selected.outputs["selection"],
    ).set_display_name("export")
    exported.set_caching_options(False)  # writes outside the artifact store: always run
