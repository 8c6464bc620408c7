"""The run plan: where a run writes, and the exact keys each pipeline task receives.

Pure functions of the validated config (no KFP, no torch), shared by the local runner, the
compilers and the submitters, so every target hands each task the same keys. :func:`make_plan`
refuses, before anything is written, every write location inside ``input_dir``;
:func:`claim_run` then claims the run folder (:mod:`kurate.io.runfolder`) for the ``kurate`` command.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from kurate.config import lightly_keys
from kurate.config.load import phase_config, redacted, to_yaml
from kurate.errors import ConfigError, DatapoolError, OutputExistsError, StorageError
from kurate.io import runfolder, storage
from kurate.media import crops
from kurate.media import metadata as computed_metadata
from kurate.models import pretag
from kurate.outputs import export
from kurate.selection import sources as sel_sources
from kurate.selection import spec as sel_spec

log = logging.getLogger("kurate.plan")

TASKS = ("ingest", "check", "train", "embed", "pretag", "select", "export")
#: Inside the run directory: the training epoch checkpoints (a rerun resumes from them) and the model.
CHECKPOINTS_DIR = "checkpoints"
LATEST_CHECKPOINT = "checkpoint_latest.ckpt"


#: Keys a resumed run folder may change: resources that do not change what is computed, and
#: ``lightly.trainer.max_epochs`` (raising it on a rerun continues training, by design).
RESUMABLE_CHANGES = (
    "lightly.loader.batch_size",
    "lightly.loader.num_workers",
    "lightly.trainer.max_epochs",
    "worker_id",
    "token",
    "sanity_check",
)


@dataclass
class RunPlan:
    """Resolved locations and per-task configs of one run."""

    run_dir: str
    work_dir: str
    task_configs: dict[str, dict[str, Any]]
    resumed: bool
    output_dir: str = ""
    #: ``run_directory`` (None: a timestamp folder, which the claim picks)
    run_name: str | None = None
    #: every key as this run resolves it (locations absolute): what a resumed run folder must match
    settings: dict[str, Any] = field(default_factory=dict)
    #: the run's identity across resumes (the claim's token; '' without a claim)
    token: str = ""


def phase_value(node: Any) -> Any:
    """Plain data of a config node."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def run_name(cfg: DictConfig, now: float | None = None) -> str:
    """``run_directory`` if given, else a timestamp like Lightly's (local time, to the second)."""
    if cfg.run_directory not in (None, ""):
        name = str(cfg.run_directory)
        if name.startswith("/") or ".." in name.split("/"):
            raise ConfigError(
                "run_directory", f"got {name!r}; allowed: a relative folder name inside output_dir"
            )
        return name
    return time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data}


def _refuse_inside_input(input_dir: str, places: list[tuple[str, str]]) -> None:
    """Every place this run writes, resolved (symlinks too), must lie outside the input."""
    for key, where in places:
        if where and storage.is_inside(where, input_dir):
            shown = where if os.path.realpath(where) == where else f"{where} (-> {os.path.realpath(where)})"
            raise ConfigError(
                key, f"{shown} is inside input_dir ({input_dir}); kurate never writes into the input"
            )


def claim_run(plan: RunPlan, now: float | None = None) -> runfolder.Claim:
    """Claim the run folder of ``plan`` for this process (see :mod:`kurate.io.runfolder`).

    A timestamp folder is picked here (never one another run took); a named one is locked, and a
    resumed one must have been started with the same settings (:data:`RESUMABLE_CHANGES` aside).
    """
    claim = runfolder.claim(plan.output_dir, plan.run_name, plan.settings, now, may_change=RESUMABLE_CHANGES)
    runfolder.sweep_finished(plan.output_dir)  # finished runs killed in their last steps
    return claim


def finish_complete_run(run_dir: str) -> None:
    """What a run killed after its ``report.json`` had still to do: drop the datapool state it replaced.

    (The claim already cleared its ``.work`` and lock.) Run by the ``kurate`` command when it
    refuses a complete run folder, so such a kill costs nothing lasting.
    """
    import json

    from kurate.pool import datapool

    try:
        report = json.loads(storage.read_text(storage.join(run_dir, export.REPORT_JSON)))
    except (FileNotFoundError, ValueError):
        return
    dp = report.get("datapool") if isinstance(report, dict) else None
    if isinstance(dp, dict) and dp.get("updated") and dp.get("location") and dp.get("version"):
        datapool.drop_superseded(str(dp["location"]), int(dp["version"]))


def trains(cfg: DictConfig) -> bool:
    """Whether the run trains: ``enable_training`` with at least one epoch."""
    return bool(cfg.enable_training) and int(cfg.lightly.trainer.max_epochs) > 0


def make_plan(
    cfg: DictConfig,
    now: float | None = None,
    claim: runfolder.Claim | None = None,
    *,
    refuse_complete: bool = True,
    here: bool = False,
) -> RunPlan:
    """Check output safety and build the per-task configs for ``cfg``.

    Without ``claim`` the run folder is ``run_directory`` or a timestamp, and a complete one is
    refused (unless ``refuse_complete`` is off: the claim refuses it then); with it, the claimed
    folder and the run's token.

    Lightly keys that do nothing here are named first, one warning line each. Its requests to
    buckets are start checks (:func:`kurate.io.storage.start_checks`): small, and answered at once by
    a live store, so a dead endpoint stops the run here within seconds. ``here``: the tasks run in
    this environment, so what they need locally (the built-in detector's weights) is checked too.
    """
    if claim is None:  # (the plan made after the claim repeats neither)
        lightly_keys.warn_inert(cfg)
    with storage.start_checks():
        return _make_plan(cfg, now, claim, refuse_complete, here)


def _make_plan(
    cfg: DictConfig,
    now: float | None,
    claim: runfolder.Claim | None,
    refuse_complete: bool,
    here: bool = False,
) -> RunPlan:
    input_dir = str(cfg.input_dir or cfg.datasource.dataset_id or "")
    if not input_dir:
        raise ConfigError("input_dir", "missing; set input_dir=<folder or URI> (or datasource.dataset_id)")
    output_dir = str(cfg.output_dir or "")
    if not output_dir:
        raise ConfigError("output_dir", "missing; set output_dir=<folder or URI>")
    if storage.is_remote(input_dir):
        # Fails fast on systemic problems (no credentials, access denied, no such bucket).
        if not storage.exists(input_dir):
            raise ConfigError("input_dir", f"{input_dir}: no objects under this prefix")
    else:
        input_dir = os.path.abspath(input_dir)
        if not os.path.isdir(input_dir):
            raise ConfigError("input_dir", f"{input_dir} does not exist or is not a folder")
    if not storage.is_remote(output_dir):
        output_dir = os.path.abspath(output_dir)
    named = str(cfg.run_directory) if cfg.run_directory not in (None, "") else None
    if claim is not None:
        run_dir, resumed = claim.run_dir, claim.resumed
    else:
        run_dir = storage.join(output_dir, run_name(cfg, now))
        resumed = False
    places = [("output_dir", output_dir), ("run_directory" if named else "output_dir", run_dir)]
    if not storage.is_remote(output_dir):
        places.append(("output_dir", storage.join(output_dir, OUTPUT_CACHE)))
    if not storage.is_remote(input_dir):
        places.append(("TMPDIR", tempfile.gettempdir()))
    if cfg.enable_training and cfg.lightly.checkpoint_callback.dirpath:
        dirpath = storage.resolve_relative(str(cfg.lightly.checkpoint_callback.dirpath), output_dir)
        places.append(("lightly.checkpoint_callback.dirpath", os.path.abspath(dirpath)))
    _refuse_inside_input(input_dir, places)
    if claim is None and storage.exists(run_dir):
        if refuse_complete and export.is_complete(run_dir):
            raise OutputExistsError(
                f"run_directory: {run_dir} already holds a complete run; choose another name"
            )
        resumed = True
    # kfp.local's scratch must be a local folder: the run's own .work, or a temp folder (made by the
    # runner) when the outputs go to a bucket.
    work_dir = os.path.join(run_dir, ".work") if not storage.is_remote(run_dir) else ""

    def rel(value: str) -> str:
        return storage.resolve_relative(value, output_dir)

    data = redacted(cfg)
    tasks = {t: phase_config(cfg, t) for t in ("ingest", "check", "embed", "select", "export", "report")}
    tasks["pretag"] = _pretag_task(cfg, rel)
    if here:  # before anything is written (the write probe below): images bring their own weights
        pretag.check_weights_here(tasks["pretag"].get("settings") or {})
    _requirements_to_select(cfg, tasks)
    _object_level_keys(cfg, tasks, input_dir, output_dir)
    tasks["ingest"].update(input_dir=input_dir, relevant_filenames_file=rel(str(cfg.relevant_filenames_file)))
    tasks["check"]["max_image_pixels"] = int(cfg.corruptness_check.max_image_pixels)
    tasks["check"]["strict_jpeg_check"] = bool(cfg.kurate.strict_jpeg_check)
    lc = cfg.lightly
    tasks["embed"]["lightly"] = {  # only what embedding reads: training keys must not rerun embed
        "model": phase_value(lc.model),
        "collate": {"input_size": int(lc.collate.input_size)},
        "loader": {"batch_size": int(lc.loader.batch_size), "num_workers": int(lc.loader.num_workers)},
        "pre_trained": bool(lc.pre_trained),
        "seed": int(lc.seed),
    }
    tasks["embed"].update(
        checkpoint=rel(str(cfg.checkpoint)),
        embeddings=rel(str(cfg.embeddings)),
        max_image_pixels=int(cfg.corruptness_check.max_image_pixels),
        fast_embed_decode=bool(cfg.kurate.fast_embed_decode),
    )
    tasks["train"] = _train_task(cfg, run_dir, rel)
    tasks["select"]["seed"] = int(cfg.lightly.seed)
    _selection_keys(cfg, tasks, input_dir, output_dir, rel)
    if claim is not None:
        identity: tuple[str, float] | None = (claim.token, claim.started)
    else:  # before the claim: the run folder's record, if a run was started there already
        identity = runfolder.recorded_identity(run_dir) if named else None
    _datapool_keys(cfg, tasks, input_dir, output_dir, run_dir, identity, claimed=claim is not None)
    tasks["export"].update(tasks.pop("report"))
    tasks["export"]["append_weak_labels"] = bool(cfg.append_weak_labels)
    tasks["export"]["upload_dataset"] = bool(cfg.upload_dataset)  # without a datapool: to data/sampled/
    tasks["export"].update(
        run_output=run_dir, output_dir=output_dir, config_yaml=to_yaml(data), worker_id=str(cfg.worker_id)
    )
    if claim is None:  # the claimed plan's locations are the same: probed once
        _probe_outputs(cfg, run_dir, tasks)
    settings = _flat(data)
    settings.update(input_dir=input_dir, output_dir=output_dir)
    for key in (
        "checkpoint",
        "embeddings",
        "relevant_filenames_file",
        "pretagging_config",
        "datapool.dataset_id",
    ):
        if settings.get(key):
            settings[key] = rel(str(settings[key]))
    return RunPlan(
        run_dir=run_dir,
        work_dir=work_dir,
        task_configs=tasks,
        resumed=resumed,
        output_dir=output_dir,
        run_name=named,
        settings=settings,
        token=claim.token if claim is not None else "",
    )


def _probe_outputs(cfg: DictConfig, run_dir: str, tasks: dict[str, dict[str, Any]]) -> None:
    """Create and delete a small file in every location the run will write, before anything runs.

    The run folder, the embedding cache, the datapool and training's checkpoint folder: a location
    that can be read but not written (a read-only folder or bucket, ``/dev/null``) stops the run
    here with one line naming it (exit 2), not hours later inside a phase.
    """
    pool_key = "datapool.dataset_id" if cfg.datapool.dataset_id else "datapool.name"
    pool = str((tasks["export"].get("datapool") or {}).get("location") or "")
    cache = str(tasks["embed"]["embedding_cache"])
    where = [
        ("output_dir", run_dir),
        (pool_key if pool and storage.is_inside(cache, pool) else "output_dir", cache),
    ]
    if pool:
        where.append((pool_key, pool))
    if tasks["train"].get("checkpoint_dir"):
        dirpath = cfg.lightly.checkpoint_callback.dirpath
        key = "lightly.checkpoint_callback.dirpath" if dirpath else "output_dir"
        where.append((key, str(tasks["train"]["checkpoint_dir"])))
    probed: set[str] = set()
    for key, uri in where:
        if uri in probed:
            continue
        probed.add(uri)
        try:
            storage.probe_writable(uri)
        except OSError as exc:
            raise ConfigError(key, f"{uri}: not writable ({exc.strerror or exc})") from exc
        except StorageError as exc:
            cause = str(exc).split(f"{storage.PROBE_PREFIX}", 1)[-1].split(": ", 1)[-1]
            raise ConfigError(key, f"{uri}: not writable ({cause})") from exc


def _selection_keys(
    cfg: DictConfig, tasks: dict[str, dict[str, Any]], input_dir: str, output_dir: str, rel: Any
) -> None:
    """``selection_config`` / ``method=coral``: read and check everything the strategies need, now.

    The file is read here (so select gets its content and an edited file reruns select), every value
    is validated, relative paths are resolved against ``output_dir``, and the prediction tasks, custom
    metadata and query files the strategies name must exist: a missing one stops the run at start
    with one line (exit 2), never after embedding.
    """
    sel = tasks["select"]
    raw = phase_value(cfg.selection_config)
    method = str(cfg.method)
    if raw in (None, "", {}) and method not in ("coral", "active_learning"):
        sel["selection_config"] = None
        return
    if isinstance(raw, str):
        path = rel(raw)
        try:
            text = storage.read_text(path)
        except (FileNotFoundError, IsADirectoryError):
            raise ConfigError("selection_config", f"{path} does not exist or is not a file") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(
                "selection_config", f"{path} is not valid YAML/JSON: {str(exc).splitlines()[0]}"
            ) from None
    al = cfg.active_learning
    if raw not in (None, "", {}):
        spec = sel_spec.parse(raw)
        data = spec.to_dict()
        for entry in data["strategies"]:
            inp = entry["input"]
            for key in ("dataset_id", "tag_name"):
                value = str(inp.get(key) or "")
                if value and not (key == "tag_name" and value == sel_sources.ALL_ROWS_TAG):
                    inp[key] = rel(value)
                    if not storage.is_file(inp[key]) and not storage.is_folder(inp[key]):
                        raise ConfigError(
                            f"selection_config.strategies[{data['strategies'].index(entry)}].input.{key}",
                            f"{inp[key]} does not exist (a query embeddings file, or a list of query names)",
                        )
        sel["selection_config"] = data
    else:
        column = str(cfg.active_learning_score_column_name or "")
        spec = sel_spec.coral_spec(
            None, None, str(al.task_name or ""), str(al.score_name or ""), column, diversity=method == "coral"
        )
        sel["selection_config"] = None
    sources: dict[str, str] = {}
    tasks_needed = spec.tasks()
    if sel_spec.PRETAGGING_TASK in tasks_needed and not cfg.pretagging:
        raise ConfigError("selection_config", "task lightly_pretagging needs pretagging=True")
    folder_tasks = [t for t in tasks_needed if t != sel_spec.PRETAGGING_TASK]
    if folder_tasks:
        root = _predictions_root(tasks["pretag"], input_dir, output_dir)
        if not root:
            raise ConfigError(
                "selection_config",
                f"task {folder_tasks[0]!r}: no Lightly predictions folder (.lightly/predictions in "
                "output_dir "
                "or input_dir, or pretagging_config's predictions)",
            )
        for t in folder_tasks:
            if not storage.is_file(storage.join(root, t, "schema.json")):
                raise ConfigError(
                    "selection_config", f"task {t!r}: {storage.join(root, t)} has no schema.json"
                )
        sources["predictions"] = root
    keys = spec.metadata_keys()
    for key in keys:
        if key.startswith("lightly.") and key not in computed_metadata.KEYS:
            raise ConfigError(
                "selection_config",
                f"{key!r} is not computed metadata; kurate computes {', '.join(computed_metadata.KEYS)}",
            )
    if any(k.startswith("lightly.") for k in keys) and not cfg.enable_corruptness_check:
        raise ConfigError(
            "enable_corruptness_check",
            "lightly.* metadata is computed by the corruptness check from its decode: "
            "set enable_corruptness_check=True",
        )
    custom = str(cfg.custom_metadata or "")
    if custom:
        custom = rel(custom)
        if not storage.exists(custom):
            raise ConfigError("custom_metadata", f"{custom} does not exist")
    if any(not k.startswith("lightly.") for k in keys):
        if not custom:
            for base in (output_dir, input_dir):
                cand = storage.join(base, ".lightly", "metadata")
                if storage.is_folder(cand):
                    custom = cand
                    break
        if not custom:
            raise ConfigError(
                "custom_metadata",
                "the selection reads custom metadata "
                f"({', '.join(k for k in keys if not k.startswith('lightly.'))}) "
                "but there is none: set custom_metadata or add a .lightly/metadata folder",
            )
    if custom:
        sources["custom_metadata"] = custom
    if any(e.input.column for e in spec.entries):
        if not cfg.embeddings:
            raise ConfigError(
                "active_learning_score_column_name",
                "needs embeddings=<a Lightly embeddings.csv with that column>",
            )
        sources["embeddings_file"] = rel(str(cfg.embeddings))
    sel["selection_sources"] = sources


def _predictions_root(pretag_task: dict[str, Any], input_dir: str, output_dir: str) -> str:
    """The ``.lightly/predictions`` folder the selection's tasks are read from ("" when none)."""
    candidates = []
    settings = pretag_task.get("settings") or {}
    if settings.get("source") == "predictions" and settings.get("predictions"):
        p = str(settings["predictions"])
        candidates += [p, storage.join(p, ".lightly", "predictions")]
    candidates += [storage.join(b, ".lightly", "predictions") for b in (output_dir, input_dir)]
    for cand in candidates:
        if storage.is_file(storage.join(cand, "tasks.json")) or (
            storage.is_folder(cand) and cand.endswith("predictions")
        ):
            return cand
    return ""


def _train_task(cfg: DictConfig, run_dir: str, rel: Any) -> dict[str, Any]:
    """The train task's keys.

    Off: only ``enable_training`` (no other key can rerun it). On: the training keys, the start weights
    and the run's stable checkpoint locations (so a rerun resumes).
    """
    if not cfg.enable_training:
        return {"enable_training": False}
    if not trains(cfg):
        # Lightly's ImageNet example: training on, zero epochs = embed with the start weights.
        log.info("enable_training with lightly.trainer.max_epochs=0: no training step")
        return {"enable_training": False}
    lc = cfg.lightly
    dirpath = lc.checkpoint_callback.dirpath
    return {
        "enable_training": True,
        "checkpoint": rel(str(cfg.checkpoint)),
        "checkpoint_dir": rel(str(dirpath)) if dirpath else storage.join(run_dir, CHECKPOINTS_DIR),
        "checkpoint_out": storage.join(run_dir, LATEST_CHECKPOINT),
        "max_image_pixels": int(cfg.corruptness_check.max_image_pixels),
        "lightly": {
            k: phase_value(lc[k])
            for k in (
                "model",
                "criterion",
                "optimizer",
                "collate",
                "loader",
                "trainer",
                "checkpoint_callback",
                "summary_callback",
                "pre_trained",
                "seed",
            )
        },
    }


#: Embedding cache without a datapool: shared by every run into the same output_dir.
OUTPUT_CACHE = ".kurate-cache/embeddings"


def _datapool_keys(
    cfg: DictConfig,
    tasks: dict[str, dict[str, Any]],
    input_dir: str,
    output_dir: str,
    run_dir: str,
    identity: tuple[str, float] | None = None,
    claimed: bool = False,
) -> None:
    """Datapool and embedding-cache keys of check, embed, select and export.

    The datapool's current version is read here, once: every task uses exactly that state (so a
    cached task on a cluster never mixes states), and export commits the next version only if no
    other run did in between (see :mod:`kurate.pool.datapool`). A resumed run that already committed
    (killed after its commit: the pointer records the run's token; ``identity`` = (token, start time))
    uses the state it committed on, and export rolls that commit forward instead of committing again.
    """
    from kurate.pool import datapool

    name = cfg.datapool.name
    implied = (
        name in (None, "")
        and cfg.datapool.dataset_id in (None, "")
        and cfg.datasource.dataset_id not in (None, "")
        and cfg.use_datapool is not False
    )
    if implied and cfg.object_level.task_name:
        # A datapool of crops is not supported yet: an object-level run on a datasource keeps no state.
        log.warning(
            "datasource mode with object_level: no datapool state is kept (object-level selection does "
            "not work with a datapool yet); every sample is processed"
        )
        implied = False
    if implied:
        # Datasource mode: Lightly remembered per dataset which samples a run had processed (a rerun
        # processes only new ones); the same state here is a datapool named after the datasource.
        name = datapool.datasource_pool_name(input_dir)
    loc = datapool.location(output_dir, name, cfg.datapool.dataset_id)
    if implied:
        log.info(
            "datasource mode: processed and selected samples of %s are kept in the datapool %s "
            "(datasource.process_all=True processes everything again; use_datapool=False keeps nothing)",
            input_dir,
            loc,
        )
    if loc and not storage.is_remote(loc):
        loc = os.path.abspath(loc)
    key = "datapool.dataset_id" if cfg.datapool.dataset_id not in (None, "") else "datapool.name"
    _refuse_inside_input(input_dir, [(key, loc)])
    tasks["embed"]["embedding_cache"] = (
        storage.join(loc, datapool.CACHE_DIR) if loc else storage.join(output_dir, OUTPUT_CACHE)
    )
    if not loc:
        return
    head = datapool.read_head(loc)
    committed = datapool.find_commit(loc, *identity) if identity is not None else None
    if committed is not None:  # this run committed before it was killed: select against the same base
        base_version = int(committed.pointer.get("base_version") or committed.version - 1)
        head = datapool.read_head(loc, base_version) if base_version > 0 else None
        gone = head is not None and not storage.exists(storage.join(head.state, datapool.HASHES_FILE))
        if gone and claimed:  # (before the claim: maybe a complete run, which the claim refuses)
            raise DatapoolError(
                f"datapool {loc}: this run committed version {committed.version}, but the state it was "
                f"selected against (version {base_version}) has been removed since (keep_history=False of "
                "a later run); the run folder cannot be completed: choose another run_directory"
            )
    version = head.version if head is not None else 0
    state = head.state if head is not None else ""
    run_id = run_dir.rstrip("/").rsplit("/", 1)[-1]
    if trains(cfg) and head is not None and committed is None:
        # The datapool's embeddings all come from one model; a newly trained one could not be compared
        # with them. (A rerun of the run that made the head, killed after its commit, may go on.)
        raise ConfigError(
            "enable_training",
            f"datapool {loc} already holds embeddings of its model (version {version}); a newly trained "
            f"model's embeddings could not be compared with them. Embed with the datapool's model "
            f"({_datapool_model_hint(loc)}, enable_training=False) or use another datapool.name",
        )
    checkpoint = storage.resolve_relative(str(cfg.checkpoint), output_dir)
    if head is not None and not trains(cfg) and not cfg.embeddings:
        checkpoint = _datapool_model(cfg, loc, checkpoint, tasks)
    process_all = bool(cfg.datasource.process_all)
    tasks["check"].update(datapool_state="" if process_all else state, datapool_version=version)
    tasks["select"].update(datapool_state=state, datapool_location=loc, datapool_version=version)
    tasks["export"]["datapool"] = {
        "location": loc,
        "name": str(name or ""),
        "version": version,
        "keep_history": bool(cfg.datapool.keep_history),
        "enable_update": bool(cfg.datasource.enable_datapool_update),
        "upload_dataset": bool(cfg.upload_dataset),
        # the model the embeddings come from: the one trained in this run, else `checkpoint`
        "checkpoint": storage.join(run_dir, LATEST_CHECKPOINT) if trains(cfg) else checkpoint,
        "trained": trains(cfg),
        "run_id": run_id,
        "run_token": identity[0] if identity is not None else "",
        "committed_version": committed.version if committed is not None else 0,
    }


def _datapool_model(cfg: DictConfig, loc: str, checkpoint: str, tasks: dict[str, dict[str, Any]]) -> str:
    """A datapool keeps its model: the checkpoint to embed with, checked against the datapool's at start.

    Without ``checkpoint`` the run embeds with the datapool's own (``checkpoint_latest.ckpt`` of a run that
    trained, else the copy under ``model/``), as Lightly reused it. Model settings, input size and an
    explicit checkpoint that differ from the datapool's are refused here, before anything runs; weights
    that only the embed task can identify (a local model-zoo file, random initialisation) are checked by
    it before it embeds (``expected_weights``).
    """
    import hashlib

    from kurate.pool import datapool

    stored = datapool.read_model(loc)
    if not stored or not stored.get("weights_id"):
        return checkpoint  # precomputed embeddings made it: only the dimension can be compared (select)
    hint = f"embed with the datapool's model ({_datapool_model_hint(loc)}) or use another datapool"
    lm = cfg.lightly.model
    ours = {
        "name": str(lm.name),
        "width": float(lm.width),
        "num_ftrs": int(lm.num_ftrs),
        "out_dim": int(lm.out_dim),
    }
    for k, v in ours.items():
        theirs = (stored.get("model") or {}).get(k)
        if theirs is not None and theirs != v:
            raise ConfigError(
                f"lightly.model.{k}", f"{v!r}, but datapool {loc} was built with {theirs!r}; {hint}"
            )
    size = int(cfg.lightly.collate.input_size)
    if stored.get("input_size") not in (None, size):
        raise ConfigError(
            "lightly.collate.input_size",
            f"{size}, but datapool {loc} was built with {stored['input_size']}; {hint}",
        )
    weights = str(stored["weights_id"])
    if not checkpoint:
        checkpoint = datapool.model_checkpoint(loc)
        if checkpoint:
            log.info("datapool %s: embedding with its model %s", loc, checkpoint)
    if checkpoint:
        try:
            ours_id = "sha256:" + hashlib.sha256(storage.read_bytes(checkpoint)).hexdigest()
        except FileNotFoundError:
            raise ConfigError("checkpoint", f"{checkpoint} does not exist") from None
        if ours_id != weights:
            raise ConfigError(
                "checkpoint", f"{checkpoint} is not the model datapool {loc} was built with; {hint}"
            )
        tasks["embed"]["checkpoint"] = checkpoint
    else:
        tasks["embed"]["expected_weights"] = {"weights_id": weights, "datapool": loc}
    return checkpoint


def _datapool_model_hint(loc: str) -> str:
    """How to embed with the datapool's model: its checkpoint file, else the settings it records."""
    from kurate.pool import datapool

    ckpt = datapool.model_checkpoint(loc)
    if ckpt:
        return f"checkpoint={ckpt}"
    return f"its settings are in {storage.join(loc, datapool.MODEL_DIR, datapool.MODEL_JSON)}"


def _pretag_task(cfg: DictConfig, rel: Any) -> dict[str, Any]:
    """The pretag task's keys: off, or on with the settings file read and validated now.

    A bad file stops the run before anything happens, and editing it reruns pretagging instead of
    reusing a cached result.
    """
    if not cfg.pretagging:
        return {"pretagging": False}
    path = rel(str(cfg.pretagging_config)) if cfg.pretagging_config else ""
    settings = pretag.load_settings(path)  # no file: the built-in detector
    return {
        "pretagging": True,
        "pretagging_debug": bool(cfg.pretagging_debug),
        "pretagging_config": path,
        "settings": settings,
        "max_image_pixels": int(cfg.corruptness_check.max_image_pixels),
    }


def _object_level_keys(
    cfg: DictConfig, tasks: dict[str, dict[str, Any]], input_dir: str, output_dir: str
) -> None:
    """``object_level.*``: which predictions give the boxes, and each task's part of it.

    The boxes come from this run's pretagging (``lightly_pretagging``, or the pretagging settings' own
    task) or from a task of Lightly's ``.lightly/predictions`` folder in ``input_dir`` or ``output_dir``
    (read by the pretag task, so it is found and checked now). embed cuts and embeds the crops
    (``padding``), select counts them, export names the crop dataset.
    """
    ol = tasks["embed"].pop("object_level", None) or {}
    task = str(ol.get("task_name") or "")
    if not task:
        return
    settings = tasks["pretag"].get("settings") or {}
    own_task = settings.get("source") == "predictions" and settings.get("task_name") == task
    if task != crops.PRETAGGING_TASK and not own_task:
        if cfg.pretagging:
            raise ConfigError(
                "object_level.task_name",
                f"{task!r} is not this run's pretagging: the crops come from either pretagging "
                f"(task_name={crops.PRETAGGING_TASK}) or your predictions (pretagging=False), not both",
            )
        tasks["pretag"] = {
            "pretagging": False,
            "objects": pretag.task_settings(task, [input_dir, output_dir]),
        }
    padding = float(ol.get("padding") or 0.0)
    name = str(ol.get("crop_dataset_name") or "") or f"{_base_name(input_dir)}-crops"
    tasks["embed"]["object_level"] = {"task_name": task, "padding": padding}
    tasks["select"]["object_level"] = {"task_name": task}
    tasks["export"]["object_level"] = {"task_name": task, "padding": padding, "crop_dataset_name": name}


def _base_name(location: str) -> str:
    """The last folder name of a path or URI (``crops`` when there is none)."""
    return location.rstrip("/").rsplit("/", 1)[-1].split("://")[-1] or "crops"


def _requirements_to_select(cfg: DictConfig, tasks: dict[str, dict[str, Any]]) -> None:
    """Move the pretagging requirements from pretag's keys to select's: editing them reruns only select."""
    settings = tasks["pretag"].get("settings") or {}
    wanted = settings.pop("min_requirements", None) or {}
    if not wanted:
        return
    length = int(cfg.selected_sequence_length)
    if length > 1:
        raise ConfigError(
            "pretagging_config", f"requirements {wanted} do not work with selected_sequence_length={length}"
        )
    tasks["select"]["min_requirements"] = wanted
