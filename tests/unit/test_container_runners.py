"""The container run modes' pure parts (no engine needed; the real runs are in tests/images)."""

from __future__ import annotations

import pytest

from kurate.config.load import compose_config
from kurate.errors import ConfigError
from kurate.pipelines import containers
from kurate.pipelines.argo_local import _shm_size
from kurate.plan import make_plan


def _plan(tmp_path, *extra: str):
    (tmp_path / "in").mkdir(exist_ok=True)
    cfg = compose_config(
        [
            f"input_dir={tmp_path / 'in'}",
            f"output_dir={tmp_path / 'out'}",
            "stopping_condition.n_samples=2",
            *extra,
        ]
    )
    return make_plan(cfg)


def test_mounts_input_read_only_output_read_write_and_named_files(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.ckpt").write_bytes(b"x")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "rel.txt").write_text("a.png\n")
    plan = _plan(tmp_path, f"checkpoint={tmp_path / 'models' / 'm.ckpt'}", "relevant_filenames_file=rel.txt")
    mounts = [(m.path, m.read_only) for m in containers.data_mounts(plan)]
    assert mounts[:2] == [(str(tmp_path / "in"), True), (str(tmp_path / "out"), False)]
    # A file outside both is mounted read-only; one inside output_dir needs no mount of its own.
    assert (str(tmp_path / "models" / "m.ckpt"), True) in mounts and len(mounts) == 3


def test_a_datapool_outside_the_output_is_mounted_writable(tmp_path):
    pool = tmp_path / "pools" / "p"
    plan = _plan(tmp_path, f"datapool.dataset_id={pool}")
    mounts = [(m.path, m.read_only) for m in containers.data_mounts(plan)]
    assert (str(pool), False) in mounts and pool.is_dir()


def test_buckets_are_refused_without_network(tmp_path):
    plan = _plan(tmp_path)
    plan.task_configs["export"]["output_dir"] = "s3://bucket/out"
    with pytest.raises(ConfigError, match="output_dir.*without network"):
        containers.data_mounts(plan)


def test_unknown_runner_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="KURATE_RUNNER"):
        containers.run_in_containers(_plan(tmp_path), "kubernetes")


def test_ulimit_flags_become_docker_sdk_ulimits():
    got = containers._ulimits(["--ulimit", "nofile=20000:20000", "--ulimit=nproc=30000", "--other", "x"])
    assert [(u.name, u.soft, u.hard) for u in got] == [("nofile", 20000, 20000), ("nproc", 30000, 30000)]


def test_shm_volume_of_a_template_becomes_shm_size():
    tmpl = {
        "container": {"volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]},
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}],
    }
    assert _shm_size(tmpl) == "2g"
    tmpl["container"]["volumeMounts"][0]["mountPath"] = "/data"
    assert _shm_size(tmpl) == ""


def test_kurate_refuses_an_unknown_runner_before_anything_happens(tmp_path, monkeypatch, capsys):
    from kurate.cli import main

    (tmp_path / "in").mkdir()
    monkeypatch.setenv("KURATE_RUNNER", "kubernetes")
    args = [
        f"input_dir={tmp_path / 'in'}",
        f"output_dir={tmp_path / 'out'}",
        "stopping_condition.n_samples=2",
    ]
    assert main(args) == 2
    assert "KURATE_RUNNER" in capsys.readouterr().err and not (tmp_path / "out").exists()
