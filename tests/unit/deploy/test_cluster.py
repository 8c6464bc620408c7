"""Cluster options: flags over KURATE_* env over defaults; a bad value is one line naming the flag."""

from __future__ import annotations

import argparse

import pytest

from kurate.deploy import cluster
from kurate.errors import ConfigError


def _args(*argv):
    p = argparse.ArgumentParser()
    cluster.add_arguments(p)
    return p.parse_args(list(argv))


def test_defaults():
    o = cluster.from_sources(environ={})
    assert (o.gpu_count, o.gpu_resource, o.gpu_toleration_key, o.gpu_toleration_effect) == (
        1,
        "nvidia.com/gpu",
        "nvidia.com/gpu",
        "NoSchedule",
    )
    assert o.registry == "ghcr.io/kurate" and o.image("embed") == "ghcr.io/kurate/kurate-embed:0.1.0"
    assert set(o.cpu) == set(o.memory) == set(cluster.RESOURCE_TASKS)
    assert o.tolerates and o.shm and o.embed_shards == 1


def test_flag_beats_env_beats_default():
    env = {"KURATE_GPU_COUNT": "2", "KURATE_SHM_SIZE": "4Gi", "KURATE_REGISTRY": "r.example.com/x/"}
    o = cluster.from_sources(_args("--gpu-count", "3"), environ=env)
    assert o.gpu_count == 3 and o.shm_size == "4Gi" and o.registry == "r.example.com/x"


def test_per_task_resources_merge_over_defaults():
    o = cluster.from_sources(_args("--cpu", "embed=8, merge=500m"), environ={"KURATE_MEMORY": "embed=64Gi"})
    assert (
        o.cpu["embed"] == "8" and o.cpu["merge"] == "500m" and o.cpu["check"] == cluster.DEFAULT_CPU["check"]
    )
    assert o.memory["embed"] == "64Gi" and o.memory["select"] == cluster.DEFAULT_MEMORY["select"]


def test_zero_gpus_means_no_toleration():
    o = cluster.from_sources(environ={"KURATE_GPU_COUNT": "0"})
    assert not o.tolerates
    assert not cluster.from_sources(environ={}, gpu_toleration_key="").tolerates


def test_pretag_gpus_are_set_apart_from_embed():
    o = cluster.from_sources(environ={"KURATE_PRETAG_GPU_COUNT": "0"})
    assert o.pretag_gpu_count == 0 and o.gpu_count == 1
    assert o.tolerates and not o.tolerates_with(o.pretag_gpu_count)
    assert cluster.from_sources(environ={}).pretag_gpu_count == 1


def test_train_gpus_are_set_apart_from_embed():
    o = cluster.from_sources(environ={"KURATE_TRAIN_GPU_COUNT": "0"})
    assert o.train_gpu_count == 0 and o.gpu_count == 1 and o.pretag_gpu_count == 1
    assert not o.tolerates_with(o.train_gpu_count)
    assert cluster.from_sources(environ={}).train_gpu_count == 1


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--gpu-count", "two"], "--gpu-count"),
        (["--gpu-count", "-1"], "--gpu-count"),
        (["--pretag-gpu-count", "17"], "--pretag-gpu-count"),
        (["--train-gpu-count", "-2"], "--train-gpu-count"),
        (["--gpu-toleration-effect", "NoRun"], "--gpu-toleration-effect"),
        (["--vertex-accelerator", "RTX_4090"], "--vertex-accelerator"),
        (["--shm-size", "lots"], "--shm-size"),
        (["--cpu", "embed=fast"], "--cpu"),
        (["--cpu", "training=2"], "--cpu"),
        (["--memory", "embed"], "--memory"),
        (["--embed-shards", "0"], "--embed-shards"),
        (["--registry", "https://ghcr.io/x"], "--registry"),
        (["--pod-labels", "team=a b"], "--pod-labels"),
        (["--argo-artifact-store", "azure"], "--argo-artifact-store"),
    ],
)
def test_bad_values_name_the_flag_and_what_is_allowed(argv, flag):
    with pytest.raises(ConfigError) as exc:
        cluster.from_sources(_args(*argv), environ={})
    assert exc.value.key.startswith(flag) and "KURATE_" in exc.value.key
    assert exc.value.exit_code == 2 and "\n" not in str(exc.value)


def test_describe_lists_every_option_with_its_env():
    rows = cluster.describe()
    assert [r[1] for r in rows] == [cluster.env_name(f) for f in cluster.ClusterOptions.__dataclass_fields__]
    assert ("--gpu-count", "KURATE_GPU_COUNT", "1") == rows[1][:3]
