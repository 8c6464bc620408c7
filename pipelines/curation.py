"""The curation DAG: ingest → check → train → embed (sharded) + pretag → select → export, typed artifacts.

One definition for every KFP target. :func:`build_pipeline` adds what a target needs on top:

- ``kfp``: Kubernetes settings through kfp-kubernetes (GPU toleration, a memory-backed ``/dev/shm``
  for the loader workers, pod labels) and ``nvidia.com/gpu`` as the accelerator;
- ``vertex``: the same DAG without kfp-kubernetes (Vertex AI rejects its second YAML document), with
  Vertex accelerator names and CPU/memory limits (Vertex picks a machine from limits);
- ``local``: no cluster settings (kfp.local runs every task in this Python environment).

Each task receives only its own keys, as a JSON string (a KFP ``dict`` parameter would turn the
int ``n_samples=3`` into the float ``3.0``, which means a fraction). Embedding fans out over
``embed_shards`` contiguous shards of the clean list (``dsl.ParallelFor``) and a merge joins them;
with the default of one shard it is one embed task plus a cheap merge.
"""

# No `from __future__ import annotations`: kfp reads the pipeline function's annotations as types.
from typing import Literal

from kfp import dsl

from kurate.components.check.component import check
from kurate.components.embed.component import embed
from kurate.components.export.component import export
from kurate.components.ingest.component import ingest
from kurate.components.merge.component import merge
from kurate.components.pretag.component import pretag
from kurate.components.select.component import select
from kurate.components.shards.component import shards
from kurate.components.train.component import train
from kurate.deploy.cluster import ClusterOptions, from_sources

PIPELINE_NAME = "kurate-curation"
DESCRIPTION = "Lightly-compatible data curation: dedup, embed, coreset, export."
Target = Literal["kfp", "vertex", "local"]
TARGETS: tuple[Target, ...] = ("kfp", "vertex", "local")


def _cluster(task: dsl.PipelineTask, name: str, image: str, opts: ClusterOptions, target: Target) -> None:
    """Image and CPU/memory of one task (requests on Kubernetes; on Vertex limits, which pick the machine)."""
    if target == "local":
        return
    task.set_container_image(opts.image(image))
    if target == "kfp":
        task.set_cpu_request(opts.cpu[name]).set_memory_request(opts.memory[name])
        from kfp import kubernetes

        for key, value in sorted(opts.pod_labels.items()):
            kubernetes.add_pod_label(task, key, value)
    else:
        task.set_cpu_limit(opts.cpu[name]).set_memory_limit(opts.memory[name])


def _gpu(task: dsl.PipelineTask, opts: ClusterOptions, target: Target, gpus: int | None = None) -> None:
    """A GPU task's accelerator, GPU toleration and shared memory (none of them with 0 GPUs).

    embed requests ``gpu_count`` GPUs, pretag ``pretag_gpu_count`` and train ``train_gpu_count`` (``gpus``).
    """
    if target == "local":
        return
    count = opts.gpu_count if gpus is None else gpus
    if count > 0:
        accelerator = opts.gpu_resource if target == "kfp" else opts.vertex_accelerator
        task.set_accelerator_type(accelerator).set_accelerator_limit(count)
    if target != "kfp":
        return
    from kfp import kubernetes

    if opts.tolerates_with(count):
        kubernetes.add_toleration(
            task,
            key=opts.gpu_toleration_key,
            operator="Equal" if opts.gpu_toleration_value else "Exists",
            value=opts.gpu_toleration_value or None,
            effect=opts.gpu_toleration_effect or None,  # type: ignore[arg-type]
        )
    if opts.shm:
        kubernetes.empty_dir_mount(
            task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=opts.shm_size
        )


def build_pipeline(
    options: ClusterOptions | None = None, target: Target = "kfp"
) -> dsl.graph_component.GraphComponent:
    """The curation pipeline for ``target`` with cluster settings ``options`` (default: env, defaults)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; allowed: {', '.join(TARGETS)}")
    opts = options if options is not None else from_sources()

    @dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)
    def curation_pipeline(
        ingest_config: str,
        check_config: str,
        train_config: str,
        embed_config: str,
        pretag_config: str,
        select_config: str,
        export_config: str,
        embed_shards: int = opts.embed_shards,
    ):
        """The whole curation run; each ``*_config`` is the JSON of that phase's keys (see kurate.plan)."""
        listed = ingest(config=ingest_config).set_display_name("ingest")
        listed.set_caching_options(False)  # never cached: a grown input folder must always be seen
        _cluster(listed, "ingest", "ingest", opts, target)
        checked = check(config=check_config, files=listed.outputs["files"]).set_display_name("check")
        _cluster(checked, "check", "check", opts, target)

        # train always runs: with enable_training off it only writes a "not trained" marker, so the DAG
        # has one shape on every target (kfp.local, KFP, Vertex, Argo) and embed's model input is bound.
        trained = train(config=train_config, clean=checked.outputs["clean"]).set_display_name("train")
        _cluster(trained, "train", "train", opts, target)
        _gpu(trained, opts, target, opts.train_gpu_count)

        tagged = pretag(config=pretag_config, clean=checked.outputs["clean"]).set_display_name("pretag")
        _cluster(tagged, "pretag", "pretag", opts, target)
        _gpu(tagged, opts, target, opts.pretag_gpu_count)

        plan = shards(count=embed_shards).set_display_name("embed-shards")
        _cluster(plan, "shards", "base", opts, target)
        with dsl.ParallelFor(plan.output, name="embed-shard") as shard_index:
            # embed takes the predictions too: with object_level its samples are the boxes' crops
            embedded = embed(
                config=embed_config,
                clean=checked.outputs["clean"],
                shard_index=shard_index,
                shard_count=embed_shards,
                model=trained.outputs["model"],
                predictions=tagged.outputs["predictions"],
            ).set_display_name("embed")
            _cluster(embedded, "embed", "embed", opts, target)
            _gpu(embedded, opts, target)
        merged = merge(shards=dsl.Collected(embedded.outputs["embeddings"])).set_display_name("merge")
        _cluster(merged, "merge", "base", opts, target)

        selected = select(
            config=select_config,
            embeddings=merged.outputs["embeddings"],
            files=listed.outputs["files"],
            predictions=tagged.outputs["predictions"],
            clean=checked.outputs["clean"],
        ).set_display_name("select")
        _cluster(selected, "select", "select", opts, target)
        exported = export(
            config=export_config,
            files=listed.outputs["files"],
            clean=checked.outputs["clean"],
            corrupt=checked.outputs["corrupt"],
            duplicates=checked.outputs["duplicates"],
            embeddings=merged.outputs["embeddings"],
            selection=selected.outputs["selection"],
            predictions=tagged.outputs["predictions"],
        ).set_display_name("export")
        exported.set_caching_options(False)  # writes outside the artifact store: always run
        _cluster(exported, "export", "export", opts, target)

    return curation_pipeline
