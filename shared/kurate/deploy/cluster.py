"""Cluster settings of the compiled pipelines: images, GPUs, tolerations, resources, shared memory.

These are *not* config keys: a Lightly config describes the curation job, not the cluster it runs
on, so they never enter the Hydra schema. They come from ``python -m kurate.pipelines.compile`` /
``kurate-submit`` flags, else from ``KURATE_<NAME>`` environment variables, else from the defaults
below; every compile target (kfp, vertex, argo) reads the same :class:`ClusterOptions`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kurate.deploy import images
from kurate.errors import ConfigError
from kurate.io import sharding

#: Tasks with their own resource settings: the phases and the two steps of sharded embedding.
RESOURCE_TASKS = ("ingest", "check", "train", "embed", "pretag", "select", "export", "shards", "merge")
DEFAULT_CPU = {
    "ingest": "1",
    "check": "2",
    "train": "4",
    "embed": "4",
    "pretag": "4",
    "select": "2",
    "export": "2",
    "shards": "100m",
    "merge": "1",
}
DEFAULT_MEMORY = {
    "ingest": "1Gi",
    "check": "4Gi",
    "train": "16Gi",
    "embed": "16Gi",
    "pretag": "16Gi",
    "select": "8Gi",
    "export": "4Gi",
    "shards": "128Mi",
    "merge": "4Gi",
}
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute", "")
#: Vertex AI's accelerator names (``machineSpec.acceleratorType``) for GPUs.
VERTEX_ACCELERATORS = (
    "NVIDIA_TESLA_T4",
    "NVIDIA_TESLA_V100",
    "NVIDIA_TESLA_P100",
    "NVIDIA_TESLA_P4",
    "NVIDIA_TESLA_A100",
    "NVIDIA_A100_80GB",
    "NVIDIA_L4",
    "NVIDIA_H100_80GB",
    "NVIDIA_H100_MEGA_80GB",
    "NVIDIA_H200_141GB",
    "NVIDIA_B200",
)
ARGO_ARTIFACT_STORES = ("s3", "gcs")
_CPU = re.compile(r"^([0-9]*[.])?[0-9]+m?$")  # the kfp SDK's and Kubernetes' CPU quantity forms
_MEMORY = re.compile(r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]"
    r"([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9._:-]*[a-z0-9])?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*$")


def _opt(default: Any, help_text: str, **kw: Any) -> Any:
    if callable(default):
        return field(default_factory=default, metadata={"help": help_text, **kw})
    return field(default=default, metadata={"help": help_text, **kw})


@dataclass(frozen=True)
class ClusterOptions:
    """Settings of the compiled pipelines. Flag ``--gpu-count`` = env ``KURATE_GPU_COUNT`` = ``gpu_count``."""

    registry: str = _opt(
        images.DEFAULT_REGISTRY, "image registry prefix (images <registry>/kurate-<phase>:<version>)"
    )
    gpu_count: int = _opt(1, "GPUs the embed task requests (0: CPU only, no GPU request or toleration)")
    gpu_resource: str = _opt("nvidia.com/gpu", "Kubernetes resource name of the GPU (kfp and argo targets)")
    gpu_toleration_key: str = _opt(
        "nvidia.com/gpu", "taint key of the GPU nodes that train, embed and pretag tolerate ('' = none)"
    )
    gpu_toleration_value: str = _opt(
        "", "taint value to match (operator Equal); '' tolerates any value (Exists)"
    )
    gpu_toleration_effect: str = _opt(
        "NoSchedule", "taint effect tolerated: NoSchedule, PreferNoSchedule, NoExecute or '' (all)"
    )
    pretag_gpu_count: int = _opt(
        1, "GPUs the pretag task requests (0: CPU only; runs with pretagging=False need none)"
    )
    train_gpu_count: int = _opt(
        1, "GPUs the train task requests (0: CPU only; runs with enable_training=False need none)"
    )
    vertex_accelerator: str = _opt(
        "NVIDIA_TESLA_T4", "Vertex AI accelerator type of the train, embed and pretag tasks (vertex target)"
    )
    shm_size: str = _opt(
        "2Gi", "size of the memory-backed /dev/shm of the train, embed and pretag tasks ('0' = none)"
    )
    embed_shards: int = _opt(1, "default of the run parameter embed_shards (parallel embed tasks)")
    cpu: dict[str, str] = _opt(
        lambda: dict(DEFAULT_CPU), "CPU request per task, e.g. embed=8,check=4", mapping=True
    )
    memory: dict[str, str] = _opt(
        lambda: dict(DEFAULT_MEMORY), "memory request per task, e.g. embed=32Gi", mapping=True
    )
    pod_labels: dict[str, str] = _opt(
        dict, "labels on every pod, e.g. team=vision (kfp and argo targets)", mapping=True
    )
    argo_artifact_store: str = _opt(
        "s3", "kind of the Argo artifact repository, for the shard fan-in: s3 or gcs"
    )

    def __post_init__(self) -> None:
        validate(self)

    def image(self, name: str) -> str:
        """The image of ``name`` (a phase, or ``base`` for the merge and shard steps) in this registry."""
        return images.image_for(name, self.registry)

    @property
    def tolerates(self) -> bool:
        """Whether the embed task gets a GPU toleration."""
        return self.tolerates_with(self.gpu_count)

    def tolerates_with(self, gpus: int) -> bool:
        """Whether a task requesting ``gpus`` GPUs gets the GPU toleration (train, embed, pretag)."""
        return gpus > 0 and bool(self.gpu_toleration_key)

    @property
    def shm(self) -> bool:
        """Whether the embed task mounts a memory-backed /dev/shm."""
        return self.shm_size not in ("", "0")


def flag(name: str) -> str:
    """The command-line flag of option ``name``."""
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    """The environment variable of option ``name``."""
    return "KURATE_" + name.upper()


def _where(name: str) -> str:
    return f"{flag(name)} ({env_name(name)})"


def _parse_mapping(name: str, text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ConfigError(_where(name), f"got {part!r}; allowed: KEY=VALUE items separated by commas")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def validate(o: ClusterOptions) -> None:
    """Raise :class:`ConfigError` naming the first bad option and what is allowed."""
    if not _REGISTRY.match(o.registry or ""):
        raise ConfigError(
            _where("registry"), f"got {o.registry!r}; allowed: a registry prefix like ghcr.io/me"
        )
    if isinstance(o.gpu_count, bool) or not isinstance(o.gpu_count, int) or not 0 <= o.gpu_count <= 16:
        raise ConfigError(_where("gpu_count"), f"got {o.gpu_count!r}; allowed: an integer from 0 to 16")
    for name in ("pretag_gpu_count", "train_gpu_count"):
        n = getattr(o, name)
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 16:
            raise ConfigError(_where(name), f"got {n!r}; allowed: an integer from 0 to 16")
    if (o.gpu_count or o.pretag_gpu_count or o.train_gpu_count) and not _LABEL_KEY.match(o.gpu_resource):
        raise ConfigError(
            _where("gpu_resource"), f"got {o.gpu_resource!r}; allowed: a resource name like nvidia.com/gpu"
        )
    if o.gpu_toleration_key and not _LABEL_KEY.match(o.gpu_toleration_key):
        raise ConfigError(
            _where("gpu_toleration_key"), f"got {o.gpu_toleration_key!r}; allowed: a taint key or ''"
        )
    if not _LABEL_VALUE.match(o.gpu_toleration_value):
        raise ConfigError(
            _where("gpu_toleration_value"), f"got {o.gpu_toleration_value!r}; allowed: a label value"
        )
    if o.gpu_toleration_effect not in TOLERATION_EFFECTS:
        raise ConfigError(
            _where("gpu_toleration_effect"),
            f"got {o.gpu_toleration_effect!r}; allowed: "
            + ", ".join(e or repr(e) for e in TOLERATION_EFFECTS),
        )
    if o.vertex_accelerator not in VERTEX_ACCELERATORS:
        raise ConfigError(
            _where("vertex_accelerator"),
            f"got {o.vertex_accelerator!r}; allowed: {', '.join(VERTEX_ACCELERATORS)}",
        )
    if o.shm_size not in ("", "0") and not _MEMORY.match(o.shm_size):
        raise ConfigError(
            _where("shm_size"), f"got {o.shm_size!r}; allowed: a quantity like 2Gi, or 0 (none)"
        )
    try:
        sharding.check_shard_count(o.embed_shards)
    except ConfigError as exc:
        raise ConfigError(_where("embed_shards"), exc.message) from None
    for name, pattern, example in (("cpu", _CPU, "500m or 2"), ("memory", _MEMORY, "512Mi or 8Gi")):
        values = getattr(o, name)
        for task, value in values.items():
            if task not in RESOURCE_TASKS:
                raise ConfigError(
                    _where(name), f"unknown task {task!r}; allowed: {', '.join(RESOURCE_TASKS)}"
                )
            if not pattern.match(str(value)):
                raise ConfigError(_where(name), f"{task}={value!r}; allowed: a quantity like {example}")
        missing = [t for t in RESOURCE_TASKS if t not in values]
        if missing:
            raise ConfigError(_where(name), f"no value for {', '.join(missing)}")
    for k, v in o.pod_labels.items():
        if not _LABEL_KEY.match(k) or not _LABEL_VALUE.match(v):
            raise ConfigError(_where("pod_labels"), f"{k}={v!r}; allowed: Kubernetes label keys and values")
    if o.argo_artifact_store not in ARGO_ARTIFACT_STORES:
        raise ConfigError(
            _where("argo_artifact_store"),
            f"got {o.argo_artifact_store!r}; allowed: {', '.join(ARGO_ARTIFACT_STORES)}",
        )


def _convert(name: str, f: dataclasses.Field, text: str) -> Any:
    if f.metadata.get("mapping"):
        return _parse_mapping(name, text)
    if f.type in (int, "int"):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(_where(name), f"got {text!r}; allowed: an integer") from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per option (default: unset, so the environment and the defaults still apply)."""
    group = parser.add_argument_group("cluster options (flag, else env KURATE_<NAME>, else default)")
    for f in dataclasses.fields(ClusterOptions):
        group.add_argument(
            flag(f.name), dest=f"opt_{f.name}", default=None, metavar="VALUE", help=f.metadata["help"]
        )


def from_sources(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> ClusterOptions:
    """Options from ``overrides``, else flags in ``args``, else ``KURATE_<NAME>`` env, else defaults.

    Per-task mappings (cpu, memory) given partially are merged over the defaults.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(ClusterOptions):
        text = getattr(args, f"opt_{f.name}", None) if args is not None else None
        if text is None:
            text = env.get(env_name(f.name))
        if text is not None:
            values[f.name] = _convert(f.name, f, str(text))
    values.update(overrides)
    for name, defaults in (("cpu", DEFAULT_CPU), ("memory", DEFAULT_MEMORY)):
        if name in values:
            values[name] = {**defaults, **values[name]}
    if "registry" in values:
        values["registry"] = str(values["registry"]).rstrip("/")
    return ClusterOptions(**values)


def describe() -> list[tuple[str, str, str, str]]:
    """(flag, env, default, help) of every option, for the README and ``--help``."""
    rows = []
    for f in dataclasses.fields(ClusterOptions):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        else:
            value = f.default_factory()  # type: ignore[misc,operator]
            default = (
                ",".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else repr(value)
            )
        rows.append((flag(f.name), env_name(f.name), default, str(f.metadata["help"])))
    return rows


def options_help(names: Sequence[str] | None = None) -> str:
    """A plain-text table of the options."""
    return "\n".join(
        f"  {fl:<26} {env:<30} {default}"
        for fl, env, default, _ in describe()
        if names is None or fl in names
    )
