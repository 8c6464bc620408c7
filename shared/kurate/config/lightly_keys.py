"""Lightly keys kurate accepts but that do nothing here, the aliases, and the ones it refuses.

Every key of every Lightly config version (the CLI's ``config.yaml``, the Docker docs' "List of
Parameters", the Worker config models v2-v4; tests/lightly_configs/lightly_keys.yaml) is either
implemented with Lightly's meaning, accepted with exactly one warning line saying it does nothing here
(:data:`INERT`), or refused with a reason (:data:`NOT_APPLICABLE`). A key Lightly never had stays an error.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

_PLATFORM = "Lightly platform plumbing, there is no platform here"
_UPLOAD = "uploads to the Lightly platform; kurate writes everything to output_dir"
_CLI = "a lightly CLI command's setting the Docker job never read"

#: key -> why it does nothing in kurate. Each given key is named in one warning line (never its value).
INERT: dict[str, str] = {
    "worker.force_start": "a worker registration: " + _PLATFORM,
    "pretagging_upload": _UPLOAD + " (the predictions are in <run>/pretagging/)",
    "datasource.use_redirected_read_url": "signed read URLs: " + _PLATFORM + "; kurate reads buckets",
    "datasource.bypass_verify": "the access check: " + _PLATFORM + "; kurate checks locations at start",
    "datasource.input_expiration.min_days_to_expiration": "signed read URLs: " + _PLATFORM,
    "datasource.input_expiration.handling_strategy": "signed read URLs: " + _PLATFORM,
    "shutdown_when_job_finished": "kurate always exits when its run ends",
    "num_processes": "worker tuning; kurate sizes its pools from the CPUs of each task",
    "num_threads": "worker tuning; kurate sizes its pools from the CPUs of each task",
    "checkpoint_run_id": "a platform run id: " + _PLATFORM + "; pass checkpoint=<file> instead",
    "crops.enable_upload": _UPLOAD,
    "crops.enable_upload_for_tasks": _UPLOAD,
    "cache_size": "the worker's download cache; kurate caches embeddings by content instead",
    "training.task_name": "training on object crops is not supported; enable_training trains on whole images",
    "lightly.upload": _UPLOAD,
    "lightly.resize": _UPLOAD + "; dumped images use output_image_size",
    "lightly.trainer.weights_summary": "Lightning 1 setting; use lightly.trainer.enable_model_summary",
    "lightly.collate.kernel_size": "deprecated in lightly (the blur kernel follows lightly.collate.sigmas)",
    "lightly.crop_padding": _CLI + " (lightly-crop); object_level.padding pads crops",
    "lightly.label_dir": _CLI + " (lightly-crop)",
    "lightly.label_names_file": _CLI + " (lightly-crop)",
    "lightly.input_dir": "the container sets it itself; use input_dir",
    "lightly.output_dir": "the container sets it itself; use output_dir",
    "lightly.checkpoint": "the container passes its own; use checkpoint",
    "lightly.embeddings": "the container passes its own; use embeddings",
    "lightly.token": "the container passes its own; use token",
    "lightly.dataset_id": _UPLOAD,
    "lightly.new_dataset_name": _UPLOAD,
    "lightly.custom_metadata": _UPLOAD,
    "lightly.tag_name": _CLI + " (lightly-download)",
    "lightly.exclude_parent_tag": _CLI + " (lightly-download)",
    "lightly.append": _UPLOAD,
    "lightly.embedding_name": _UPLOAD,
    "lightly.emb_upload_bsz": _UPLOAD,
    "lightly.environment_variable_names.lightly_last_checkpoint_path": _CLI,
    "lightly.environment_variable_names.lightly_last_embedding_path": _CLI,
    "lightly.environment_variable_names.lightly_last_dataset_id": _CLI,
    "lightly.data": _CLI + " (lightly 1.0; renamed input_dir)",
    "lightly.root": _CLI + " (lightly 1.0)",
    "lightly.download": _CLI + " (lightly 1.0)",
    "lightly.from_folder": _CLI + " (lightly 1.0)",
    "lightly.path_to_folder": _CLI + " (lightly 1.0)",
    "lightly.path_to_embeddings": _CLI + " (lightly 1.0)",
}

#: Lightly's other spelling of a key -> the kurate key it sets (both given and different: an error).
ALIASES: dict[str, str] = {
    "worker.worker_id": "worker_id",  # renamed by Lightly's docs of 2022-04-25
    "datapool.id": "datapool.dataset_id",  # Lightly's docs of 2022-02-24, renamed the week after
}

#: Keys (or key prefixes) some Lightly text had that kurate refuses, and why (exit 2 with the reason).
NOT_APPLICABLE: dict[str, str] = {
    "lightly.hydra": "Hydra's own settings of lightly's CLI (its run folder, help text), not a config key; "
    "the run folder is run_directory",
    "save_sampled_dataset": "only in a draft of Lightly's docs (2020-11-12), never released; "
    "use dump_dataset",
    "save_sampled_embeddings": "only in a draft of Lightly's docs (2020-11-12), never released; "
    "use dump_sampled_embeddings",
    "existing_selection_column_name": "only in a draft of Lightly's docs (2020-11-12), never released; "
    "the embeddings file's `selected` column marks samples already selected",
    "masked_out_column_name": "only in a draft of Lightly's docs (2020-11-12), never released; "
    "the embeddings file's `masked` column marks samples never to select",
    "shared_dir": "only in a draft of Lightly's docs (2020-11-12), never released; files Lightly read from "
    "the shared directory are read relative to output_dir",
}

#: Keys (prefixes) another issue implements: their status line in the README names it.
OWNED: dict[str, str] = {}

log = logging.getLogger("kurate.config")


def _match(key: str, table: dict[str, str]) -> str | None:
    """The entry of ``table`` for ``key`` or for one of its dotted prefixes."""
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        hit = table.get(".".join(parts[:i]))
        if hit is not None:
            return hit
    return None


def not_applicable(key: str) -> str | None:
    """Why kurate refuses ``key`` although a Lightly text had it, or None."""
    return _match(key, NOT_APPLICABLE)


def status(key: str) -> str:
    """The README status of a Lightly key: implemented, alias, warning, not applicable, issue N, or ''."""
    from kurate.config.schema import KurateConfig

    owner = _match(key, OWNED)
    if owner:
        return owner
    if key in INERT:
        return "warning"
    if key in ALIASES:
        return "alias"
    if not_applicable(key):
        return "not applicable"
    node: Any = OmegaConf.structured(KurateConfig)
    for part in key.split("."):
        if not OmegaConf.is_dict(node) or part not in node:
            return ""
        node = node[part]
    return "implemented"


def given_inert(cfg: DictConfig) -> list[str]:
    """The warning-only keys ``cfg`` sets (any value but None = given), in table order."""
    return [key for key in INERT if OmegaConf.select(cfg, key, default=None) is not None]


def warn_inert(cfg: DictConfig) -> list[str]:
    """Log one warning line per warning-only key the config gives (never its value); return those keys."""
    keys = given_inert(cfg)
    for key in keys:
        log.warning("%s: accepted, does nothing here (%s)", key, INERT[key])
    return keys


def apply_aliases(cfg: DictConfig) -> None:
    """Copy each alias onto the kurate key it names; both given with different values is an error."""
    from kurate.errors import ConfigError

    for alias, target in ALIASES.items():
        value = OmegaConf.select(cfg, alias, default=None)
        if value is None:
            continue
        current = OmegaConf.select(cfg, target, default=None)
        if current not in (None, "") and str(current) != str(value):
            raise ConfigError(alias, f"is Lightly's name for {target}, which is set to another value")
        OmegaConf.update(cfg, target, value, merge=False)
