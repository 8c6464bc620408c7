"""The curation DAG as a plain Argo Workflow / WorkflowTemplate (no Kubeflow needed), built with hera.

Same tasks and dependencies as :mod:`kurate.pipelines.curation`; each step runs a phase's plain entry
point, ``python -m kurate.phases.<phase> --<artifact> PATH ... --config JSON``, in that phase's image.
Artifacts go through the cluster's Argo artifact repository (S3 or GCS, configured in the
``artifact-repositories`` ConfigMap or the controller). Embedding fans out ``withSequence`` over
``embed_shards``; the shards write to one repository key (``{{workflow.name}}/embed-shards/<i>``,
unarchived) that the merge step reads back as one folder, Argo's usual map-reduce pattern.
"""

from __future__ import annotations

from typing import Any, Literal

from kurate.deploy.cluster import ClusterOptions, from_sources
from kurate.pipelines.curation import DESCRIPTION, PIPELINE_NAME

Kind = Literal["Workflow", "WorkflowTemplate"]
IN = "/tmp/kurate/in"
OUT = "/tmp/kurate/out"
CONFIG_PARAMETERS = (
    "ingest_config",
    "check_config",
    "train_config",
    "embed_config",
    "pretag_config",
    "select_config",
    "export_config",
)
SHARD_KEY = "{{workflow.name}}/embed-shards"


def _repo_artifact(store: str, **kw: Any) -> Any:
    """A key-only artifact in the configured repository (bucket and credentials come from there)."""
    from hera.workflows import GCSArtifact, NoneArchiveStrategy, S3Artifact

    cls = S3Artifact if store == "s3" else GCSArtifact
    return cls(archive=NoneArchiveStrategy(), **kw)


def build_workflow(options: ClusterOptions | None = None, kind: Kind = "WorkflowTemplate") -> Any:
    """The hera ``WorkflowTemplate`` (or ``Workflow``) of the curation pipeline for ``options``."""
    from hera.workflows import (
        DAG,
        Artifact,
        Container,
        EmptyDirVolume,
        Parameter,
        Resources,
        Task,
        Workflow,
        WorkflowTemplate,
    )
    from hera.workflows.models import (
        IntOrString,
        Metadata,
        PodSecurityContext,
        Quantity,
        Sequence,
        Toleration,
    )

    opts = options if options is not None else from_sources()
    if kind not in ("Workflow", "WorkflowTemplate"):
        raise ValueError(f"unknown Argo kind {kind!r}; allowed: Workflow, WorkflowTemplate")

    def phase(
        name: str,
        module: str,
        image: str,
        inputs: list[str],
        outputs: list[str],
        *,
        extra_args: list[str] | None = None,
        extra_inputs: list[Any] | None = None,
        output_artifacts: list[Any] | None = None,
        **kw: Any,
    ) -> Any:
        args: list[str] = []
        for a in inputs:
            args += [f"--{a}-in", f"{IN}/{a}"]
        for a in outputs:
            args += [f"--{a}-out", f"{OUT}/{a}"]
        args += extra_args if extra_args is not None else ["--config", "{{inputs.parameters.config}}"]
        params = [Parameter(name="config")]
        return Container(
            name=name,
            image=opts.image(image),
            command=["python", "-m", f"kurate.phases.{module}"],
            args=args,
            inputs=params + [Artifact(name=a, path=f"{IN}/{a}") for a in inputs] + (extra_inputs or []),
            outputs=output_artifacts
            if output_artifacts is not None
            else [Artifact(name=a, path=f"{OUT}/{a}") for a in outputs],
            resources=Resources(
                cpu_request=opts.cpu[name], memory_request=opts.memory[name], **kw.pop("gpu", {})
            ),
            **kw,
        )

    meta: dict[str, Any] = (
        {"name": PIPELINE_NAME} if kind == "WorkflowTemplate" else {"generate_name": f"{PIPELINE_NAME}-"}
    )
    cls = WorkflowTemplate if kind == "WorkflowTemplate" else Workflow
    with cls(
        **meta,
        annotations={"workflows.argoproj.io/description": DESCRIPTION},
        labels={"app.kubernetes.io/name": "kurate"},
        entrypoint="curation",
        arguments=[Parameter(name=p) for p in CONFIG_PARAMETERS]
        + [Parameter(name="embed_shards", value=str(opts.embed_shards))],
        pod_metadata=Metadata(labels=dict(sorted(opts.pod_labels.items()))) if opts.pod_labels else None,
        security_context=PodSecurityContext(run_as_non_root=True),
    ) as workflow:
        ingest = phase("ingest", "ingest", "ingest", [], ["files"])
        check = phase("check", "check", "check", ["files"], ["clean", "corrupt", "duplicates"])

        def gpu_settings(count: int) -> tuple[dict[str, Any], dict[str, Any]]:
            """GPU resources and pod settings (toleration, /dev/shm) of a task with ``count`` GPUs."""
            gpu: dict[str, Any] = {}
            kw: dict[str, Any] = {}
            if count > 0:
                gpu = {"gpus": count, "gpu_flag": opts.gpu_resource}
            if opts.tolerates_with(count):
                kw["tolerations"] = [
                    Toleration(
                        key=opts.gpu_toleration_key,
                        operator="Equal" if opts.gpu_toleration_value else "Exists",
                        value=opts.gpu_toleration_value or None,
                        effect=opts.gpu_toleration_effect or None,
                    )
                ]
            if opts.shm:
                kw["volumes"] = [
                    EmptyDirVolume(
                        name="dshm",
                        mount_path="/dev/shm",
                        medium="Memory",
                        size_limit=Quantity(opts.shm_size),
                    )
                ]
            return gpu, kw

        train_gpu, train_kw = gpu_settings(opts.train_gpu_count)
        train = phase("train", "train", "train", ["clean"], ["model"], gpu=train_gpu, **train_kw)
        gpu, embed_kw = gpu_settings(opts.gpu_count)
        embed = phase(
            "embed",
            "embed",
            "embed",
            ["clean", "model", "predictions"],
            ["embeddings"],
            extra_args=[
                "--shard-index",
                "{{inputs.parameters.shard_index}}",
                "--shard-count",
                "{{inputs.parameters.shard_count}}",
                "--config",
                "{{inputs.parameters.config}}",
            ],
            extra_inputs=[Parameter(name="shard_index"), Parameter(name="shard_count")],
            output_artifacts=[
                _repo_artifact(
                    opts.argo_artifact_store,
                    name="embeddings",
                    path=f"{OUT}/embeddings",
                    key=SHARD_KEY + "/{{inputs.parameters.shard_index}}",
                )
            ],
            gpu=gpu,
            **embed_kw,
        )
        merge = Container(
            name="merge",
            image=opts.image("base"),
            command=["python", "-m", "kurate.phases.merge"],
            args=["--shards-in", f"{IN}/shards", "--embeddings-out", f"{OUT}/embeddings"],
            inputs=[
                _repo_artifact(opts.argo_artifact_store, name="shards", path=f"{IN}/shards", key=SHARD_KEY)
            ],
            outputs=[Artifact(name="embeddings", path=f"{OUT}/embeddings")],
            resources=Resources(cpu_request=opts.cpu["merge"], memory_request=opts.memory["merge"]),
        )
        pretag_gpu, pretag_kw = gpu_settings(opts.pretag_gpu_count)
        pretag = phase("pretag", "pretag", "pretag", ["clean"], ["predictions"], gpu=pretag_gpu, **pretag_kw)
        select = phase(
            "select", "select", "select", ["embeddings", "files", "predictions", "clean"], ["selection"]
        )
        export = phase(
            "export",
            "export",
            "export",
            ["files", "clean", "corrupt", "duplicates", "embeddings", "selection", "predictions"],
            [],
        )

        def art(name: str, task: str, output: str | None = None) -> Artifact:
            return Artifact(name=name, from_=f"{{{{tasks.{task}.outputs.artifacts.{output or name}}}}}")

        def cfg(phase_name: str) -> Parameter:
            return Parameter(name="config", value=f"{{{{workflow.parameters.{phase_name}_config}}}}")

        with DAG(name="curation"):
            Task(name="ingest", template=ingest, arguments=[cfg("ingest")])
            Task(
                name="check",
                template=check,
                arguments=[cfg("check"), art("files", "ingest")],
                dependencies=["ingest"],
            )
            Task(
                name="pretag",
                template=pretag,
                arguments=[cfg("pretag"), art("clean", "check")],
                dependencies=["check"],
            )
            Task(
                name="train",
                template=train,
                arguments=[cfg("train"), art("clean", "check")],
                dependencies=["check"],
            )
            Task(
                name="embed",
                template=embed,
                arguments=[
                    cfg("embed"),
                    Parameter(name="shard_index", value="{{item}}"),
                    Parameter(name="shard_count", value="{{workflow.parameters.embed_shards}}"),
                    art("clean", "check"),
                    art("model", "train"),
                    art("predictions", "pretag"),
                ],
                with_sequence=Sequence(count=IntOrString("{{workflow.parameters.embed_shards}}")),
                dependencies=["check", "train", "pretag"],
            )
            Task(name="merge", template=merge, dependencies=["embed"])
            Task(
                name="select",
                template=select,
                arguments=[
                    cfg("select"),
                    art("embeddings", "merge"),
                    art("files", "ingest"),
                    art("predictions", "pretag"),
                    art("clean", "check"),
                ],
                dependencies=["ingest", "check", "merge", "pretag"],
            )
            Task(
                name="export",
                template=export,
                arguments=[
                    cfg("export"),
                    art("files", "ingest"),
                    art("clean", "check"),
                    art("corrupt", "check"),
                    art("duplicates", "check"),
                    art("embeddings", "merge"),
                    art("selection", "select"),
                    art("predictions", "pretag"),
                ],
                dependencies=["ingest", "check", "merge", "pretag", "select"],
            )
    return workflow


def workflow_dict(options: ClusterOptions | None = None, kind: Kind = "WorkflowTemplate") -> dict[str, Any]:
    """The Argo manifest as plain data."""
    data: dict[str, Any] = build_workflow(options, kind).to_dict()
    return data
