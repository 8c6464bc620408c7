"""Config via Hydra's compose(overrides=...): each rejected value fails with one line naming the key."""

from __future__ import annotations

import dataclasses

import pytest
from hydra import compose, initialize
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from kurate.config import load
from kurate.config.schema import PHASE_KEYS, KurateConfig
from kurate.errors import ConfigError

OK = ["stopping_condition.n_samples=10"]


def test_schema_composes_with_hydra_defaults_equal_to_spec():
    load._register(KurateConfig, load.SCHEMA_NAME)
    GlobalHydra.instance().clear()
    with initialize(version_base=None, config_path=None):
        cfg = compose(config_name=load.SCHEMA_NAME, overrides=["lightly.loader.batch_size=64"])
    GlobalHydra.instance().clear()
    assert cfg.lightly.loader.batch_size == 64
    # A few defaults straight from the spec and the Lightly CLI.
    assert cfg.method == "coreset"
    assert cfg.stopping_condition.n_samples == -1
    assert cfg.stopping_condition.min_distance == -1.0
    assert cfg.corruptness_check.corruption_threshold == 0.1
    assert cfg.enable_corruptness_check is True and cfg.remove_exact_duplicates is True
    assert cfg.dump_sampled_embeddings is True and cfg.dump_dataset is False
    assert cfg.output_image_format == "png" and cfg.output_image_size == -1
    assert cfg.n_example_images == 6 and cfg.memory_requirement_in_GB == 2
    assert cfg.scorer == "object-frequency" and cfg.scorer_config.frequency_penalty == 0.25
    assert cfg.scorer_config.min_score == 0.9
    assert cfg.datapool.keep_history is True and cfg.datasource.enable_datapool_update is True
    assert cfg.lightly.model.name == "resnet-18" and cfg.lightly.model.num_ftrs == 32
    assert cfg.lightly.model.out_dim == 128 and cfg.lightly.collate.input_size == 64
    assert cfg.lightly.loader.batch_size == 64 and cfg.lightly.loader.num_workers == -1
    assert cfg.lightly.seed == 1


def test_every_spec_key_is_in_the_schema():
    spec_keys = [
        "token",
        "worker_id",
        "sanity_check",
        "relevant_filenames_file",
        "enable_corruptness_check",
        "corruptness_check.corruption_threshold",
        "remove_exact_duplicates",
        "checkpoint",
        "embeddings",
        "enable_training",
        "dump_dataset",
        "dump_sampled_embeddings",
        "output_image_size",
        "output_image_format",
        "upload_dataset",
        "pretagging",
        "pretagging_debug",
        "pretagging_config",
        "append_weak_labels",
        "normalize_embeddings",
        "scorer",
        "scorer_config.frequency_penalty",
        "scorer_config.min_score",
        "method",
        "stopping_condition.n_samples",
        "stopping_condition.min_distance",
        "selected_sequence_length",
        "datapool.name",
        "datapool.keep_history",
        "datapool.dataset_id",
        "datasource.dataset_id",
        "datasource.process_all",
        "datasource.enable_datapool_update",
        "datasource.use_frame_count_metadata",
        "upload_report",
        "n_example_images",
        "memory_requirement_in_GB",
        "show_video_sampling_timeline",
        "run_directory",
        "input_dir",
        "output_dir",
        "lightly.loader.batch_size",
        "lightly.loader.num_workers",
        "lightly.model.name",
        "lightly.collate.input_size",
        "lightly.trainer.max_epochs",
    ]
    from omegaconf import OmegaConf

    cfg = OmegaConf.structured(KurateConfig)
    for key in spec_keys:
        assert OmegaConf.select(cfg, key, default="__missing__") != "__missing__", key


def test_each_key_belongs_to_exactly_one_phase():
    seen: dict[str, str] = {}
    for phase, group in PHASE_KEYS.items():
        for f in dataclasses.fields(group):
            assert f.name not in seen, f"{f.name} in {seen.get(f.name)} and {phase}"
            seen[f.name] = phase
    assert set(seen) == {f.name for f in dataclasses.fields(KurateConfig)}


def test_phase_config_hands_only_own_keys():
    cfg = load.compose_config(["stopping_condition.n_samples=0.5", "lightly.loader.batch_size=8"])
    sel = load.phase_config(cfg, "select")
    assert sel["stopping_condition"] == {"n_samples": 0.5, "min_distance": -1.0}
    assert "lightly" not in sel and "input_dir" not in sel
    assert load.phase_config(cfg, "embed")["lightly"]["loader"]["batch_size"] == 8


@pytest.mark.parametrize(
    "override, key, allowed",
    [
        ("method=foo", "method", "coreset, random"),
        ("stopping_condition.n_samples=1.5", "stopping_condition.n_samples", "float in (0, 1]"),
        ("stopping_condition.n_samples=0", "stopping_condition.n_samples", "int >= 1"),
        ("stopping_condition.n_samples=-2", "stopping_condition.n_samples", "-1"),
        ("stopping_condition.n_samples=true", "stopping_condition.n_samples", "int >= 1"),
        ("stopping_condition.n_samples=abc", "stopping_condition.n_samples", "int >= 1"),
        ("stopping_condition.min_distance=-0.5", "stopping_condition.min_distance", ">= 0"),
        ("corruptness_check.corruption_threshold=2", "corruptness_check.corruption_threshold", "[0, 1]"),
        ("corruptness_check.corruption_threshold=-0.1", "corruptness_check.corruption_threshold", "[0, 1]"),
        ("n_example_images=3", "n_example_images", "even"),
        ("n_example_images=-2", "n_example_images", "even"),
        ("memory_requirement_in_GB=0", "memory_requirement_in_GB", "> 0"),
        ("output_image_size=0", "output_image_size", "-1"),
        ("output_image_size=[10]", "output_image_size", "[height, width]"),
        ("output_image_size=[10,-1]", "output_image_size", "[height, width]"),
        ("output_image_format=gifx", "output_image_format", "png"),
        ("selected_sequence_length=0", "selected_sequence_length", ">= 1"),
        ("scorer=foo", "scorer", "object-frequency"),
        ("scorer_config.min_score=1.5", "scorer_config.min_score", "[0, 1]"),
        ("scorer_config.frequency_penalty=-1", "scorer_config.frequency_penalty", ">= 0"),
        ("lightly.model.name=vit", "lightly.model.name", "resnet-18"),
        ("lightly.model.num_ftrs=0", "lightly.model.num_ftrs", ">= 1"),
        ("lightly.collate.input_size=2", "lightly.collate.input_size", ">= 8"),
        ("lightly.loader.batch_size=0", "lightly.loader.batch_size", ">= 1"),
        ("lightly.loader.num_workers=-3", "lightly.loader.num_workers", "-1"),
        ("datapool.name=''", "datapool.name", "non-empty"),
        ("input_dir=a", "datasource.dataset_id", "differs"),
        # training keys; Lightning 1 spellings that cannot be mapped to one device are refused
        ("lightly.trainer.gpus=2", "lightly.trainer.gpus", "multi-GPU training is not supported"),
        ("lightly.trainer.gpus=-1", "lightly.trainer.gpus", "0 or 1"),
        ("lightly.trainer.devices=4", "lightly.trainer.devices", "multi-GPU"),
        ("lightly.trainer.accelerator=tpu", "lightly.trainer.accelerator", "auto, gpu, cuda, cpu"),
        ("lightly.trainer.precision=8", "lightly.trainer.precision", "16-mixed"),
        ("lightly.trainer.max_epochs=-1", "lightly.trainer.max_epochs", ">= 0"),
        ("lightly.optimizer.lr=0", "lightly.optimizer.lr", "> 0"),
        ("lightly.optimizer.weight_decay=-1", "lightly.optimizer.weight_decay", ">= 0"),
        ("lightly.criterion.temperature=0", "lightly.criterion.temperature", "> 0"),
        ("lightly.criterion.memory_bank_size=-5", "lightly.criterion.memory_bank_size", ">= 0"),
        ("lightly.collate.cj_prob=1.5", "lightly.collate.cj_prob", "[0, 1]"),
        ("lightly.collate.cj_hue=0.7", "lightly.collate.cj_hue", "[0, 0.5]"),
        ("lightly.collate.min_scale=0", "lightly.collate.min_scale", "(0, 1]"),
        ("lightly.collate.sigmas=[2,1]", "lightly.collate.sigmas", "min <= max"),
        ("lightly.collate.rr_degrees=abc", "lightly.collate.rr_degrees", "[min, max]"),
        ("lightly.checkpoint_callback.save_top_k=-2", "lightly.checkpoint_callback.save_top_k", "-1"),
        ("lightly.checkpoint_callback.dirpath=s3://b/c", "lightly.checkpoint_callback.dirpath", "local"),
    ],
)
def test_rejected_values_name_the_key_and_what_is_allowed(override, key, allowed):
    extra = ["datasource.dataset_id=b"] if key == "datasource.dataset_id" else []
    with pytest.raises(ConfigError) as err:
        load.compose_config([*OK, override, *extra])
    assert err.value.key == key
    assert allowed in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("override", ["foo=1", "+foo=1", "lightly.loader.foo=2", "+stopping_condition.x=1"])
def test_unknown_keys_are_rejected(override):
    with pytest.raises(ConfigError) as err:
        load.compose_config([*OK, override])
    assert "unknown key" in str(err.value)
    assert err.value.key == override.lstrip("+").split("=")[0]


@pytest.mark.parametrize(
    "override", ["lightly.loader.batch_size=abc", "remove_exact_duplicates=maybe", "lightly.model.width=wide"]
)
def test_wrong_types_are_rejected(override):
    with pytest.raises(ConfigError) as err:
        load.compose_config([*OK, override])
    assert err.value.key == override.split("=")[0]


def test_no_stopping_condition_is_a_complete_run():
    """Lightly's defaults (both conditions -1) are valid: the select phase then takes every clean sample."""
    cfg = load.compose_config([])
    assert cfg.stopping_condition.n_samples == -1 and cfg.stopping_condition.min_distance == -1


def test_sequence_length_with_checks_on_says_which_keys_to_turn_off():
    with pytest.raises(ConfigError) as err:
        load.compose_config([*OK, "selected_sequence_length=5"])
    assert "enable_corruptness_check=False" in str(err.value)
    assert "remove_exact_duplicates=False" in str(err.value)


def test_video_keys_are_accepted():
    cfg = load.compose_config(
        [
            "stopping_condition.n_samples=8",
            "selected_sequence_length=4",
            "enable_corruptness_check=False",
            "remove_exact_duplicates=False",
            "datasource.use_frame_count_metadata=True",
        ]
    )
    assert cfg.selected_sequence_length == 4 and cfg.datasource.use_frame_count_metadata is True
    with pytest.raises(ConfigError) as err:
        load.compose_config(
            ["stopping_condition.n_samples=6", "selected_sequence_length=4"]
            + ["enable_corruptness_check=False", "remove_exact_duplicates=False"]
        )
    assert err.value.key == "stopping_condition.n_samples" and "multiple of 4" in str(err.value)


def test_training_with_embeddings_is_an_error():
    with pytest.raises(ConfigError) as err:
        load.compose_config([*OK, "enable_training=True", "embeddings=e.csv"])
    assert err.value.key == "enable_training"


def test_pretagging_settings_in_a_bucket_are_accepted():
    cfg = load.compose_config([*OK, "pretagging=True", "pretagging_config=s3://bucket/pretag.yaml"])
    assert cfg.pretagging_config == "s3://bucket/pretag.yaml"


@pytest.mark.parametrize(
    "overrides",
    [
        ["datapool.name=pool"],
        ["datapool.dataset_id=s3://bucket/pool"],
        ["datapool.name=pool", "upload_dataset=True", "datapool.keep_history=False"],
        ["datapool.name=pool", "datasource.process_all=True", "datasource.enable_datapool_update=False"],
    ],
)
def test_datapool_keys_are_accepted(overrides):
    cfg = load.compose_config([*OK, *overrides])
    assert cfg.datapool.name == "pool" or cfg.datapool.dataset_id == "s3://bucket/pool"


@pytest.mark.parametrize(
    "overrides",
    [
        ["upload_dataset=True"],
        ["datapool.name=p", "upload_dataset=True", "datasource.enable_datapool_update=False"],
    ],
)
def test_upload_dataset_without_an_updatable_datapool_is_accepted(overrides):
    """Lightly uploaded to its platform; here the selection goes to data/sampled/ with a warning."""
    assert load.compose_config([*OK, *overrides]).upload_dataset is True


@pytest.mark.parametrize(
    "key, value",
    [
        ("input_dir", "s3://bucket/x"),
        ("output_dir", "gs://b/o"),
        ("checkpoint", "s3://models/resnet.ckpt"),
        ("embeddings", "gs://b/emb/embeddings.csv"),
        ("relevant_filenames_file", "s3://bucket/lists/relevant.txt"),
    ],
)
def test_bucket_uris_are_accepted(key, value):
    cfg = load.compose_config([*OK, f"{key}={value}"])
    assert OmegaConf.select(cfg, key) == value


def test_datasource_dataset_id_accepts_a_bucket_uri():
    cfg = load.compose_config(
        ["output_dir=/tmp/o", "stopping_condition.n_samples=3", "datasource.dataset_id=gs://bkt/in"]
    )
    assert cfg.datasource.dataset_id == "gs://bkt/in"


@pytest.mark.parametrize(
    "override, key",
    [
        ("input_dir=ftp://host/x", "input_dir"),
        ("output_dir=s3:///no-bucket", "output_dir"),
        ("checkpoint=hdfs://x/y.ckpt", "checkpoint"),
    ],
)
def test_bad_location_names_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load.compose_config([*OK, override])
    assert err.value.key == key and "s3://bucket/prefix" in str(err.value)


@pytest.mark.parametrize(
    "overrides, key, says",
    [
        (["pretagging_debug=True"], "pretagging_debug", "needs pretagging=True"),
        (["append_weak_labels=True"], "append_weak_labels", "needs pretagging=True"),
    ],
)
def test_pretagging_keys_are_checked_at_start(overrides, key, says):
    with pytest.raises(ConfigError) as err:
        load.compose_config([*OK, *overrides])
    assert err.value.key == key and says in str(err.value)


def test_pretagging_keys_are_accepted():
    cfg = load.compose_config(
        [
            *OK,
            "pretagging=True",
            "pretagging_config=pretag.yaml",
            "pretagging_debug=True",
            "append_weak_labels=True",
        ]
    )
    assert cfg.pretagging and cfg.pretagging_debug and cfg.append_weak_labels


@pytest.mark.parametrize(
    "override, check",
    [
        ("stopping_condition.n_samples=1", lambda c: c.stopping_condition.n_samples == 1),
        ("stopping_condition.n_samples=1.0", lambda c: isinstance(c.stopping_condition.n_samples, float)),
        ("stopping_condition.n_samples=0.25", lambda c: c.stopping_condition.n_samples == 0.25),
        ("stopping_condition.min_distance=0", lambda c: c.stopping_condition.min_distance == 0.0),
        ("output_image_size=[32,64]", lambda c: list(c.output_image_size) == [32, 64]),
        ("output_image_size=100", lambda c: c.output_image_size == 100),
        ("method=random", lambda c: c.method == "random"),
        ("datapool.name=null", lambda c: c.datapool.name is None),
        ("lightly.trainer.gpus=0", lambda c: c.lightly.trainer.gpus == 0),
        ("enable_training=True", lambda c: c.enable_training is True),  # implemented: no longer refused
        ("lightly.trainer.gpus=1", lambda c: c.lightly.trainer.gpus == 1),  # lightly's own default
        (
            "lightly.trainer.precision=16",
            lambda c: load.normalise_precision(c.lightly.trainer.precision) == "16-mixed",
        ),
        (
            "lightly.trainer.precision=bf16",
            lambda c: load.normalise_precision(c.lightly.trainer.precision) == "bf16-mixed",
        ),
        (
            "lightly.trainer.precision=32-true",
            lambda c: load.normalise_precision(c.lightly.trainer.precision) == "32-true",
        ),
        ("lightly.trainer.accelerator=cpu", lambda c: c.lightly.trainer.accelerator == "cpu"),
        ("lightly.trainer.devices=auto", lambda c: c.lightly.trainer.devices == "auto"),
        ("lightly.collate.rr_degrees=[-10,10]", lambda c: list(c.lightly.collate.rr_degrees) == [-10, 10]),
    ],
)
def test_accepted_values(override, check):
    assert check(load.compose_config([*OK, override]))


def test_token_from_env_and_redacted():
    cfg = load.compose_config(OK, environ={"LIGHTLY_TOKEN": "s3cr3t"})
    assert cfg.token == "s3cr3t"
    data = load.redacted(cfg)
    assert data["token"] == load.REDACTED
    assert "s3cr3t" not in load.to_yaml(data)


def test_yaml_config_file_with_overrides(tmp_path):
    (tmp_path / "job.yaml").write_text(
        "input_dir: /data\nstopping_condition:\n  n_samples: 0.3\nlightly:\n  loader:\n    batch_size: 512\n"
    )
    cfg = load.compose_config(["lightly.loader.batch_size=8"], str(tmp_path), "job")
    assert cfg.input_dir == "/data" and cfg.stopping_condition.n_samples == 0.3
    assert cfg.lightly.loader.batch_size == 8  # the command line wins over the file


def test_yaml_config_file_unknown_key(tmp_path):
    (tmp_path / "job.yaml").write_text("stopping_condition:\n  n_samples: 3\nbogus: 1\n")
    with pytest.raises(ConfigError) as err:
        load.compose_config([], str(tmp_path), "job")
    assert err.value.key == "bogus"
