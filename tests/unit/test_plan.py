"""Run plan: output safety, run directory naming, and the keys each task receives."""

from __future__ import annotations

import pytest

from kurate.config.load import compose_config
from kurate.errors import ConfigError, OutputExistsError
from kurate.plan import TASKS, claim_run, make_plan


def _cfg(tmp_path, *extra):
    (tmp_path / "in").mkdir(exist_ok=True)
    return compose_config(
        [
            f"input_dir={tmp_path / 'in'}",
            f"output_dir={tmp_path / 'out'}",
            "stopping_condition.n_samples=3",
            *extra,
        ]
    )


def test_output_inside_input_is_an_error(tmp_path):
    (tmp_path / "in").mkdir()
    cfg = compose_config(
        [
            f"input_dir={tmp_path / 'in'}",
            f"output_dir={tmp_path / 'in' / 'out'}",
            "stopping_condition.n_samples=3",
        ]
    )
    with pytest.raises(ConfigError) as err:
        make_plan(cfg)
    assert err.value.key == "output_dir"


def test_missing_input_is_an_error(tmp_path):
    cfg = compose_config(
        [f"input_dir={tmp_path / 'nope'}", f"output_dir={tmp_path / 'o'}", "stopping_condition.n_samples=3"]
    )
    with pytest.raises(ConfigError) as err:
        make_plan(cfg)
    assert err.value.key == "input_dir"


def test_complete_run_directory_is_an_error_incomplete_is_resumed(tmp_path):
    cfg = _cfg(tmp_path, "run_directory=r1")
    plan = make_plan(cfg)
    assert plan.run_dir == str(tmp_path / "out" / "r1") and not plan.resumed
    assert not (tmp_path / "out").exists()  # the start's write probe leaves nothing behind
    (tmp_path / "out" / "r1").mkdir(parents=True)
    assert make_plan(cfg).resumed
    (tmp_path / "out" / "r1" / "report.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="r1"):
        make_plan(cfg)


def test_timestamp_run_directory(tmp_path):
    plan = make_plan(_cfg(tmp_path), now=0.0)
    assert plan.run_dir.startswith(str(tmp_path / "out") + "/19")


def test_relative_paths_resolve_against_output_dir(tmp_path):
    plan = make_plan(
        _cfg(
            tmp_path,
            "relevant_filenames_file=lists/rel.txt",
            "checkpoint=ckpt/m.ckpt",
            "embeddings=/abs/e.csv",
        )
    )
    assert plan.task_configs["ingest"]["relevant_filenames_file"] == str(tmp_path / "out" / "lists/rel.txt")
    assert plan.task_configs["embed"]["checkpoint"] == str(tmp_path / "out" / "ckpt/m.ckpt")
    assert plan.task_configs["embed"]["embeddings"] == "/abs/e.csv"


def test_changing_n_samples_changes_only_select_and_export(tmp_path):
    a = make_plan(_cfg(tmp_path, "run_directory=r"))
    b = make_plan(_cfg(tmp_path, "run_directory=r", "stopping_condition.n_samples=5"))
    changed = {t for t in a.task_configs if a.task_configs[t] != b.task_configs[t]}
    assert changed == {"select", "export"}


def test_training_keys_do_not_reach_embed(tmp_path):
    a = make_plan(_cfg(tmp_path, "run_directory=r"))
    b = make_plan(
        _cfg(tmp_path, "run_directory=r", "lightly.trainer.max_epochs=5", "lightly.optimizer.lr=0.1")
    )
    assert a.task_configs["embed"] == b.task_configs["embed"]


def test_token_never_reaches_a_task(tmp_path):
    plan = make_plan(_cfg(tmp_path, "token=hunter2"))
    assert "hunter2" not in repr(plan.task_configs)


def test_train_task_gets_only_enable_training_when_off(tmp_path):
    a = make_plan(_cfg(tmp_path, "run_directory=r"))
    b = make_plan(
        _cfg(tmp_path, "run_directory=r", "lightly.trainer.max_epochs=5", "lightly.optimizer.lr=0.1")
    )
    assert a.task_configs["train"] == b.task_configs["train"] == {"enable_training": False}
    assert set(a.task_configs) == set(TASKS)


def test_train_task_keys_when_on(tmp_path):
    plan = make_plan(
        _cfg(
            tmp_path,
            "run_directory=r",
            "enable_training=True",
            "checkpoint=start.ckpt",
            "lightly.trainer.max_epochs=7",
            "lightly.trainer.gpus=1",
        )
    )
    t = plan.task_configs["train"]
    run_dir = str(tmp_path / "out" / "r")
    assert t["enable_training"] is True
    assert t["checkpoint"] == str(tmp_path / "out" / "start.ckpt")  # training starts from it
    assert t["checkpoint_dir"] == f"{run_dir}/checkpoints"  # stable across reruns: resume
    assert t["checkpoint_out"] == f"{run_dir}/checkpoint_latest.ckpt"
    lc = t["lightly"]
    assert lc["trainer"]["max_epochs"] == 7 and lc["trainer"]["gpus"] == 1
    assert set(lc) >= {"model", "criterion", "optimizer", "collate", "loader", "trainer", "seed"}
    assert lc["collate"]["cj_prob"] == 0.8 and lc["loader"]["drop_last"] is True
    assert "token" not in repr(t) and "stopping_condition" not in t
    # the embed task's keys do not change when training is switched on or tuned
    off = make_plan(_cfg(tmp_path, "run_directory=r", "checkpoint=start.ckpt"))
    assert plan.task_configs["embed"] == off.task_configs["embed"]


def test_checkpoint_callback_dirpath_overrides_the_checkpoint_folder(tmp_path):
    plan = make_plan(
        _cfg(tmp_path, "enable_training=True", "lightly.checkpoint_callback.dirpath=ck", "run_directory=r")
    )
    assert plan.task_configs["train"]["checkpoint_dir"] == str(tmp_path / "out" / "ck")


def test_datapool_keys_of_each_task(tmp_path):
    import numpy as np

    from kurate.pool import datapool

    plan = make_plan(_cfg(tmp_path, "datapool.name=pool"))
    loc = str(tmp_path / "out" / "datapool" / "pool")
    assert plan.task_configs["export"]["datapool"]["location"] == loc
    assert plan.task_configs["export"]["datapool"]["version"] == 0
    assert plan.task_configs["embed"]["embedding_cache"] == loc + "/cache/embeddings"
    assert (
        plan.task_configs["check"]["datapool_state"] == "" and "datapool" not in plan.task_configs["select"]
    )
    desc = {"dim": 2}
    first = datapool.commit(loc, 0, ["a.png"], np.ones((1, 2)), ["h"], desc, run_id="r0")
    plan = make_plan(_cfg(tmp_path, "datapool.name=pool"))
    assert plan.task_configs["check"]["datapool_state"] == first.state
    assert plan.task_configs["select"]["datapool_state"] == first.state
    assert plan.task_configs["export"]["datapool"]["version"] == 1
    every = make_plan(_cfg(tmp_path, "datapool.name=pool", "datasource.process_all=True"))
    assert every.task_configs["check"]["datapool_state"] == ""  # process_all: nothing skipped
    assert every.task_configs["select"]["datapool_state"] == first.state  # still preselected
    no_pool = make_plan(_cfg(tmp_path))
    assert no_pool.task_configs["embed"]["embedding_cache"] == str(
        tmp_path / "out" / ".kurate-cache/embeddings"
    )
    with pytest.raises(ConfigError) as err:
        make_plan(_cfg(tmp_path, f"datapool.dataset_id={tmp_path / 'in' / 'pool'}"))
    assert err.value.key == "datapool.dataset_id"


def test_training_with_a_datapool(tmp_path):
    """The trained model goes into the datapool; training against a datapool made by another run is refused
    (its embeddings come from another model), while a rerun of the run that made it may go on."""
    import numpy as np

    from kurate.pool import datapool

    plan = make_plan(_cfg(tmp_path, "datapool.name=pool", "enable_training=True", "run_directory=r1"))
    dp = plan.task_configs["export"]["datapool"]
    assert dp["trained"] is True and dp["checkpoint"] == str(
        tmp_path / "out" / "r1" / "checkpoint_latest.ckpt"
    )
    off = make_plan(_cfg(tmp_path, "datapool.name=pool", "checkpoint=m.ckpt", "run_directory=r0"))
    assert off.task_configs["export"]["datapool"]["trained"] is False
    assert off.task_configs["export"]["datapool"]["checkpoint"] == str(tmp_path / "out" / "m.ckpt")

    loc = dp["location"]
    cfg = _cfg(tmp_path, "datapool.name=pool", "enable_training=True", "run_directory=r1")
    claim = claim_run(make_plan(cfg))  # run r1 commits, then is killed before its report
    datapool.commit(loc, 0, ["a.png"], np.ones((1, 2)), ["h"], {"dim": 2}, run_id="r1", run_token=claim.token)
    claim.release()
    claim = claim_run(make_plan(cfg))
    again = make_plan(cfg, claim=claim)  # its rerun goes on: it rolls its own commit forward
    assert again.task_configs["export"]["datapool"]["committed_version"] == 1
    assert again.task_configs["export"]["datapool"]["version"] == 0  # selected against the same base
    claim.release()
    with pytest.raises(ConfigError) as err:
        make_plan(_cfg(tmp_path, "datapool.name=pool", "enable_training=True", "run_directory=r2"))
    assert err.value.key == "enable_training" and f"{loc}/model/model.json" in str(err.value)
    with open(f"{loc}/checkpoint_latest.ckpt", "wb") as fh:  # a datapool made by a training run
        fh.write(b"model")
    with pytest.raises(ConfigError) as err:
        make_plan(_cfg(tmp_path, "datapool.name=pool", "enable_training=True", "run_directory=r2"))
    assert f"checkpoint={loc}/checkpoint_latest.ckpt" in str(err.value)
    make_plan(_cfg(tmp_path, "datapool.name=pool", "run_directory=r3"))  # without training: fine


def _kurate_desc(weights_id, **model):
    cfg = {"name": "resnet-18", "width": 1.0, "num_ftrs": 32, "out_dim": 128, **model}
    return {"dim": cfg["num_ftrs"], "model": cfg, "input_size": 64, "weights_id": weights_id}


def test_a_datapool_keeps_its_model(tmp_path):
    """Without `checkpoint`, a run on a datapool embeds with the datapool's model (Lightly reused it);
    another model, input size or checkpoint is refused at start, naming the key."""
    import hashlib

    import numpy as np

    from kurate.pool import datapool

    model = tmp_path / "trained.ckpt"
    model.write_bytes(b"the trained weights")
    sha = "sha256:" + hashlib.sha256(model.read_bytes()).hexdigest()
    loc = str(tmp_path / "out" / "datapool" / "pool")
    datapool.commit(
        loc, 0, ["a.png"], np.ones((1, 32)), ["h"], _kurate_desc(sha), run_id="r0", checkpoint=str(model)
    )
    plan = make_plan(_cfg(tmp_path, "datapool.name=pool"))
    used = plan.task_configs["embed"]["checkpoint"]
    assert used == datapool.model_checkpoint(loc) and used.startswith(loc)
    assert plan.task_configs["export"]["datapool"]["checkpoint"] == used
    for extra, key in [
        ("lightly.model.num_ftrs=16", "lightly.model.num_ftrs"),
        ("lightly.model.name=resnet-34", "lightly.model.name"),
        ("lightly.collate.input_size=32", "lightly.collate.input_size"),
    ]:
        with pytest.raises(ConfigError) as err:
            make_plan(_cfg(tmp_path, "datapool.name=pool", extra))
        assert err.value.key == key and loc in str(err.value)
    other = tmp_path / "out" / "other.ckpt"
    other.write_bytes(b"other weights")
    with pytest.raises(ConfigError) as err:
        make_plan(_cfg(tmp_path, "datapool.name=pool", "checkpoint=other.ckpt"))
    assert err.value.key == "checkpoint" and "not the model" in str(err.value)
    same = tmp_path / "out" / "same.ckpt"
    same.write_bytes(model.read_bytes())  # the same weights under another name: fine
    assert make_plan(_cfg(tmp_path, "datapool.name=pool", "checkpoint=same.ckpt")).task_configs["embed"][
        "checkpoint"
    ] == str(same)


def test_a_datapool_without_a_checkpoint_file_has_embed_check_its_weights(tmp_path):
    import numpy as np

    from kurate.pool import datapool

    loc = str(tmp_path / "out" / "datapool" / "pool")
    datapool.commit(loc, 0, ["a.png"], np.ones((1, 32)), ["h"], _kurate_desc("random:1"), run_id="r0")
    plan = make_plan(_cfg(tmp_path, "datapool.name=pool"))
    assert plan.task_configs["embed"]["checkpoint"] == ""
    assert plan.task_configs["embed"]["expected_weights"] == {"weights_id": "random:1", "datapool": loc}
    fresh = make_plan(_cfg(tmp_path, "datapool.name=fresh"))  # an empty datapool checks nothing
    assert "expected_weights" not in fresh.task_configs["embed"]


def test_datasource_mode_implies_a_datapool_state(tmp_path):
    """datasource.dataset_id without a datapool key: a datapool named after the datasource keeps what was
    processed, so a rerun skips it; process_all=True processes everything; use_datapool=False keeps none."""
    import numpy as np

    from kurate.pool import datapool

    (tmp_path / "in").mkdir()
    source = str(tmp_path / "in")

    def plan(*extra):
        return make_plan(
            compose_config(
                [
                    f"datasource.dataset_id={source}",
                    f"output_dir={tmp_path / 'out'}",
                    "run_directory=r",
                    *extra,
                ]
            )
        )

    first = plan()
    dp = first.task_configs["export"]["datapool"]
    name = datapool.datasource_pool_name(source)
    assert dp["location"] == str(tmp_path / "out" / "datapool" / name) and dp["name"] == name
    assert name.startswith("datasource-in-") and name == datapool.datasource_pool_name(source + "/")
    assert name != datapool.datasource_pool_name(str(tmp_path / "elsewhere" / "in"))
    assert first.task_configs["ingest"]["input_dir"] == source
    state = datapool.commit(dp["location"], 0, ["a.png"], np.ones((1, 2)), ["h"], {"dim": 2}, run_id="r0")
    again = plan()
    assert again.task_configs["check"]["datapool_state"] == state.state  # seen samples are skipped
    assert plan("datasource.process_all=True").task_configs["check"]["datapool_state"] == ""
    assert "datapool" not in plan("use_datapool=False").task_configs["export"]
    named = plan("datapool.name=mine").task_configs["export"]["datapool"]
    assert named["location"] == str(tmp_path / "out" / "datapool" / "mine")  # an explicit datapool wins
    plain = make_plan(_cfg(tmp_path))  # input_dir, no datasource: no state
    assert "datapool" not in plain.task_configs["export"]


def test_max_epochs_zero_means_no_training_step(tmp_path):
    plan = make_plan(_cfg(tmp_path, "enable_training=True", "lightly.trainer.max_epochs=0"))
    assert plan.task_configs["train"] == {"enable_training": False}
    pool = make_plan(
        _cfg(tmp_path, "enable_training=True", "lightly.trainer.max_epochs=0", "datapool.name=p")
    )
    assert pool.task_configs["export"]["datapool"]["trained"] is False


def test_upload_dataset_reaches_export_without_a_datapool(tmp_path):
    plan = make_plan(_cfg(tmp_path, "upload_dataset=True"))
    assert plan.task_configs["export"]["upload_dataset"] is True
    assert "datapool" not in plan.task_configs["export"]


def test_inert_keys_warn_once_at_plan(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        make_plan(_cfg(tmp_path, "worker.force_start=False", "lightly.upload=full", "lightly.token=SECRET"))
    lines = [r.getMessage() for r in caplog.records if "does nothing here" in r.getMessage()]
    assert sorted(line.split(":")[0] for line in lines) == [
        "lightly.token",
        "lightly.upload",
        "worker.force_start",
    ]
    assert not any("SECRET" in line for line in lines)


def test_kurate_only_keys_reach_the_phases_that_read_them(tmp_path):
    plan = make_plan(_cfg(tmp_path))
    assert plan.task_configs["check"]["strict_jpeg_check"] is True  # the stricter check is on by default
    assert plan.task_configs["embed"]["fast_embed_decode"] is False  # the exact decode is the default
    plan = make_plan(
        _cfg(tmp_path, "kurate.strict_jpeg_check=False", "kurate.fast_embed_decode=True", "run_directory=b")
    )
    assert plan.task_configs["check"]["strict_jpeg_check"] is False
    assert plan.task_configs["embed"]["fast_embed_decode"] is True
    assert "kurate" not in plan.task_configs["select"]  # other phases don't see (or rerun on) them
    with pytest.raises(ConfigError, match="kurate.fast_embed_decod"):
        make_plan(_cfg(tmp_path, "kurate.fast_embed_decod=True"))
