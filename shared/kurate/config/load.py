"""Compose, validate and split the config.

``compose_config`` builds the config exactly as Hydra does for the Lightly container (a YAML file
and/or ``key=value`` overrides over the structured schema), ``validate`` checks every value and
fails with one line naming the key and what is allowed, and ``phase_config`` hands each phase
only its own keys.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kurate.config import lightly_keys
from kurate.config.schema import PHASE_KEYS, KurateConfig
from kurate.errors import ConfigError

SCHEMA_NAME = "kurate_schema"
_USER_NAME = "kurate_user_config"

MODEL_NAMES = ("resnet-9", "resnet-18", "resnet-34", "resnet-50", "resnet-101", "resnet-152")
IMAGE_FORMATS = ("png", "jpg", "jpeg", "bmp", "webp", "tif", "tiff", "ppm")
METHODS = ("coreset", "random", "coral", "active_learning")
SCORERS = ("object-frequency",)
REDACTED = "***"

#: ``lightly.trainer.accelerator`` values (one device per training task).
ACCELERATORS = ("auto", "gpu", "cuda", "cpu")
#: ``lightly.trainer.precision``: Lightning 1 / lightly spellings -> Lightning 2's.
PRECISION_ALIASES = {
    "32": "32-true",
    "32-true": "32-true",
    "16": "16-mixed",
    "16-mixed": "16-mixed",
    "bf16": "bf16-mixed",
    "bf16-mixed": "bf16-mixed",
    "64": "64-true",
    "64-true": "64-true",
    "16-true": "16-true",
    "bf16-true": "bf16-true",
}
#: Precisions that need a GPU (fp16); on the CPU training falls back to 32-bit with a warning.
PRECISIONS_GPU_ONLY = ("16-mixed", "16-true")


#: Finite, sane bounds of every numeric key, checked at start (inclusive). A value outside is a
#: one-line config error naming the key; keys with special values (-1 = off, fractions, lists) are
#: checked by :func:`validate` first and only their plain numbers reach these bounds. A new numeric
#: key must be added here (tests/unit/test_config_hardening.py walks the schema for them).
NUMERIC_RANGES: dict[str, tuple[float, float, str]] = {
    "stopping_condition.n_samples": (1, 10**12, "a count up to 10^12"),
    "stopping_condition.min_distance": (0, 1e6, "a distance in [0, 1e6]"),
    "corruptness_check.corruption_threshold": (0, 1, "a number in [0, 1]"),
    "corruptness_check.max_image_pixels": (1, 2**40, "an int in [1, 2^40]"),
    "selected_sequence_length": (1, 10**6, "an int in [1, 10^6]"),
    "scorer_config.frequency_penalty": (0, 1e6, "a number in [0, 1e6]"),
    "scorer_config.min_score": (0, 1, "a number in [0, 1]"),
    "n_example_images": (0, 1000, "an even number in [0, 1000]"),
    "memory_requirement_in_GB": (1e-3, 65536, "a number of GB in [0.001, 65536]"),
    "output_image_size": (1, 16384, "-1, or sizes in [1, 16384] px"),
    "lightly.model.num_ftrs": (1, 65536, "an int in [1, 65536]"),
    "lightly.model.out_dim": (1, 65536, "an int in [1, 65536]"),
    "lightly.model.width": (1 / 64, 16, "a number in [1/64, 16] (narrower leaves layers without channels)"),
    "lightly.criterion.temperature": (1e-4, 1e4, "a number in [1e-4, 1e4]"),
    "lightly.criterion.memory_bank_size": (0, 10**7, "an int in [0, 10^7]"),
    "lightly.optimizer.lr": (1e-12, 1e3, "a number in [1e-12, 1000]"),
    "lightly.optimizer.weight_decay": (0, 10, "a number in [0, 10]"),
    "lightly.collate.input_size": (8, 4096, "an int in [8, 4096] px"),
    "lightly.collate.cj_prob": (0, 1, "a probability in [0, 1]"),
    "lightly.collate.cj_bright": (0, 100, "a number in [0, 100]"),
    "lightly.collate.cj_contrast": (0, 100, "a number in [0, 100]"),
    "lightly.collate.cj_sat": (0, 100, "a number in [0, 100]"),
    "lightly.collate.cj_hue": (0, 0.5, "a number in [0, 0.5]"),
    "lightly.collate.min_scale": (1e-6, 1, "a number in (0, 1]"),
    "lightly.collate.random_gray_scale": (0, 1, "a probability in [0, 1]"),
    "lightly.collate.gaussian_blur": (0, 1, "a probability in [0, 1]"),
    "lightly.collate.sigmas": (1e-6, 1000, "[min, max] with 0 < min <= max <= 1000"),
    "lightly.collate.vf_prob": (0, 1, "a probability in [0, 1]"),
    "lightly.collate.hf_prob": (0, 1, "a probability in [0, 1]"),
    "lightly.collate.rr_prob": (0, 1, "a probability in [0, 1]"),
    "lightly.collate.rr_degrees": (-360, 360, "null, a number x in [0, 360] or [min, max] in [-360, 360]"),
    "lightly.loader.batch_size": (1, 2**20, "an int in [1, 2^20]"),
    "lightly.loader.num_workers": (-1, 1024, "-1 (all cores), 0, or up to 1024"),
    "lightly.trainer.max_epochs": (0, 10**6, "an int in [0, 10^6] (0: no training step)"),
    "lightly.checkpoint_callback.save_top_k": (-1, 10**6, "-1 (all), 0, or up to 10^6"),
    "lightly.summary_callback.max_depth": (-1, 1000, "-1 (all), 0, or up to 1000"),
    "lightly.crop_padding": (0, 10, "a number in [0, 10]"),
    "lightly.collate.kernel_size": (0, 1000, "null or a number in [0, 1000] (accepted, unused)"),
    "lightly.seed": (0, 2**32 - 1, "an int in [0, 2^32 - 1]"),
    "object_level.padding": (0, 10, "a number from 0 to 10 (relative to the box size)"),
}

#: A Lightly config has a few hundred YAML nodes; aliases can make a small file expand to billions.
MAX_YAML_NODES = 100_000
MAX_CONFIG_BYTES = 1 << 20


def _register(node: Any, name: str) -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=name, node=node)


UNKNOWN = "unknown key (not a kurate/Lightly config key; see the spec)"


def unknown_key(key: str) -> ConfigError:
    """The one-line error for a key kurate does not take.

    Why, when a Lightly text had it; a hint when it is a key of lightly's CLI without its ``lightly.``
    prefix (the Docker job refused those too).
    """
    why = lightly_keys.not_applicable(key)
    if why:
        return ConfigError(key, f"not applicable: {why}")
    if key and not key.startswith("lightly.") and lightly_keys.status(f"lightly.{key}") == "implemented":
        return ConfigError(key, f"{UNKNOWN}; did you mean lightly.{key}?")
    return ConfigError(key, UNKNOWN)


def _full_key(key: str, overrides: Sequence[str]) -> str:
    """The override's whole dotted key when Hydra names only its first unknown part (``collate``)."""
    if not key:
        return key
    for o in overrides:
        name = o.split("=", 1)[0].lstrip("+~")
        if name == key or name.startswith(key + "."):
            return name
    return key


def _error_from_omegaconf(exc: BaseException) -> ConfigError:
    """Turn Hydra/OmegaConf composition errors into one line naming the key."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for err in chain:
        if isinstance(err, OmegaConfBaseException):
            key = str(getattr(err, "full_key", "") or "")
            msg = str(getattr(err, "msg", "") or str(err)).splitlines()[0]
            if "not in struct" in msg or "Key '" in msg and "not" in msg:
                return unknown_key(key)
            return ConfigError(key, msg)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if text.startswith("Could not override '"):
        key = text.split("'")[1]
        return unknown_key(key)
    return ConfigError("", text)


def compose_config(
    overrides: Sequence[str] = (),
    config_path: str | None = None,
    config_name: str | None = None,
    environ: dict[str, str] | None = None,
) -> DictConfig:
    """Compose the schema, an optional YAML file (``config_path/config_name``) and the overrides.

    Raises :class:`ConfigError` (one line, naming the key) for unknown keys and wrong types; values
    are checked by :func:`validate`, which this calls before returning.
    """
    from hydra import compose, initialize
    from hydra.core.global_hydra import GlobalHydra

    env = os.environ if environ is None else environ
    overrides, token = _take_token(overrides)
    base = OmegaConf.structured(KurateConfig)
    if config_name:
        directory = config_path or "."
        path = os.path.join(
            directory, config_name if config_name.endswith((".yaml", ".yml")) else f"{config_name}.yaml"
        )
        if not os.path.isfile(path):
            raise ConfigError("--config-name", f"config file {path} does not exist")
        _check_yaml_size(path)
        try:
            user = OmegaConf.load(path)
        except Exception as exc:  # yaml errors come in many types
            raise ConfigError(
                "--config-name", f"{path} is not valid YAML: {str(exc).splitlines()[0]}"
            ) from None
        if isinstance(user, DictConfig):
            user.pop("defaults", None)
            user.pop("hydra", None)
            user = _worker_sections(user)
        try:
            base = OmegaConf.merge(base, user)
        except OmegaConfBaseException as exc:
            err = _error_from_omegaconf(exc)
            raise unknown_key(_full_yaml_key(err.key, user)) if err.message == UNKNOWN else err from None
    name = _USER_NAME if config_name else SCHEMA_NAME
    _register(base, name)
    GlobalHydra.instance().clear()
    try:
        with initialize(version_base=None, config_path=None):
            cfg = compose(config_name=name, overrides=list(overrides))
    except Exception as exc:  # Hydra wraps OmegaConf errors in its own exceptions
        err = _error_from_omegaconf(exc)
        if err.message.startswith(UNKNOWN):
            err = unknown_key(_full_key(err.key, overrides))
        raise err from None
    finally:
        GlobalHydra.instance().clear()
    # Hydra's '+key=value' bypasses struct mode: reject keys the schema does not have.
    _reject_unknown(cfg, OmegaConf.structured(KurateConfig), "")
    _resolve_interpolations(cfg)
    if token is not None:
        cfg.token = token.replace("${", "\\${")  # literal: OmegaConf would read ${...} as an interpolation
    elif not cfg.token and env.get("LIGHTLY_TOKEN"):
        cfg.token = env["LIGHTLY_TOKEN"]
    # Defaults a container sets (the all-in-one image: Lightly's /home/input_dir and /home/shared_dir).
    if not cfg.input_dir and not cfg.datasource.dataset_id and env.get("KURATE_INPUT_DIR"):
        cfg.input_dir = env["KURATE_INPUT_DIR"]
    if not cfg.output_dir and env.get("KURATE_OUTPUT_DIR"):
        cfg.output_dir = env["KURATE_OUTPUT_DIR"]
    lightly_keys.apply_aliases(cfg)
    if not cfg.worker_id and env.get("LIGHTLY_WORKER_ID"):  # how the LightlyOne Worker takes its id
        cfg.worker_id = env["LIGHTLY_WORKER_ID"]
    cfg.method = str(cfg.method).lower()  # Lightly's docs also wrote CORESET
    validate(cfg)
    return cfg


def _full_yaml_key(key: str, user: Any) -> str:
    """The dotted path of the first key of the YAML under ``key`` that the schema lacks (for the error)."""
    node = OmegaConf.select(user, key, default=None) if key else None
    base = OmegaConf.structured(KurateConfig)
    sub = OmegaConf.select(base, key, default=None) if key else None
    if isinstance(node, DictConfig) and isinstance(sub, DictConfig):
        for k in node.keys():
            if k not in sub:
                return f"{key}.{k!s}"
    return key


def _worker_sections(user: DictConfig) -> DictConfig:
    """Lightly Worker's ``schedule_compute_worker_run`` sections as one flat config.

    A file may hold ``worker_config`` (the same keys as a flat config), ``lightly_config`` (the
    ``lightly.*`` keys) and ``selection_config`` as Lightly's Python client takes them; keys given at
    the top level win.
    """
    worker = user.pop("worker_config", None)
    lightly = user.pop("lightly_config", None)
    if worker is None and lightly is None:
        return user
    parts: list[Any] = []
    for name, part in (("worker_config", worker), ("lightly_config", lightly)):
        if part is not None and not isinstance(part, DictConfig):
            raise ConfigError(name, f"expected a mapping of keys, got {type(part).__name__}")
    if worker is not None:
        parts.append(worker)
    if lightly is not None:
        parts.append(OmegaConf.create({"lightly": lightly}))
    merged = OmegaConf.merge(*parts, user)
    assert isinstance(merged, DictConfig)
    return merged


def _resolve_interpolations(cfg: DictConfig) -> None:
    """Resolve every ``${...}`` now (``${oc.env:X}``, ``${other.key}``): a failure names its key."""
    raw = OmegaConf.to_container(cfg, resolve=False)

    def leaves(data: Any, prefix: str) -> Iterator[str]:
        if isinstance(data, dict):
            for k, v in data.items():
                yield from leaves(v, f"{prefix}{k}.")
        elif isinstance(data, list) and any("${" in str(v) for v in data):
            yield prefix[:-1]
        elif isinstance(data, str) and "${" in data:
            yield prefix[:-1]

    for key in leaves(raw, ""):
        try:
            OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
        except OmegaConfBaseException as exc:
            msg = str(getattr(exc, "msg", "") or exc).splitlines()[0]
            raise ConfigError(key, f"cannot resolve its interpolation: {msg}") from None
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:  # inside a list: the key is the list's
        raise _error_from_omegaconf(exc) from None


def _take_token(overrides: Sequence[str]) -> tuple[list[str], str | None]:
    """``token=...`` taken out of the overrides and read literally (never parsed, never echoed).

    Hydra's override grammar rejects ``,`` (a sweep), quotes, ``#``, brackets, ``~``, ``${`` and a
    trailing ``==`` (base64 padding), and its error repeats the value. The token is everything after
    the first ``=``; one pair of matching surrounding quotes is removed (``token='...'``).
    """
    rest: list[str] = []
    token: str | None = None
    for o in overrides:
        key, sep, value = o.partition("=")
        if sep and key.lstrip("+") == "token":
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            token = value
        elif key in ("~token", "~token"):
            token = ""
        else:
            rest.append(o)
    return rest, token


def _check_yaml_size(path: str) -> None:
    """Refuse a config file that is huge or whose aliases expand to more than :data:`MAX_YAML_NODES`.

    Counted on the composed YAML graph (aliases are shared there), so a billion-node alias bomb is
    refused in milliseconds instead of being expanded.
    """
    import yaml

    if os.path.getsize(path) > MAX_CONFIG_BYTES:
        raise ConfigError(
            "--config-name", f"{path} is larger than {MAX_CONFIG_BYTES // 1024} KiB; not a config"
        )
    try:
        with open(path, encoding="utf-8") as fh:
            root = yaml.compose(fh, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError("--config-name", f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    sizes: dict[int, int] = {}
    busy: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in busy:
            raise ConfigError("--config-name", f"{path} holds a recursive YAML alias")
        busy.add(key)
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(v) for v in node.value)
        else:
            total = 1
        busy.discard(key)
        sizes[key] = min(total, MAX_YAML_NODES + 1)
        return sizes[key]

    if root is not None and size(root) > MAX_YAML_NODES:
        raise ConfigError(
            "--config-name",
            f"{path} expands to more than {MAX_YAML_NODES} nodes through YAML aliases; a config has a few "
            "hundred",
        )


def _reject_unknown(cfg: Any, schema: Any, prefix: str) -> None:
    for key in cfg.keys():
        full = f"{prefix}{key}"
        if key not in schema:
            raise unknown_key(full)
        sub = schema[key] if OmegaConf.is_dict(schema[key]) else None
        if sub is not None and OmegaConf.is_dict(cfg[key]):
            _reject_unknown(cfg[key], sub, f"{full}.")


# --------------------------------------------------------------------------------------------------
# Value checks
# --------------------------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _need(cond: bool, key: str, allowed: str) -> None:
    if not cond:
        raise ConfigError(key, allowed)


def _plain(v: Any) -> Any:
    return OmegaConf.to_container(v) if OmegaConf.is_config(v) else v


def n_samples_active(v: Any) -> bool:
    """Whether ``stopping_condition.n_samples`` is set (anything but -1)."""
    return not (_is_num(v) and v == -1)


def normalise_precision(value: Any) -> str:
    """Lightning 2's name for a ``lightly.trainer.precision`` value (``16`` -> ``"16-mixed"``)."""
    key = str(value).strip().lower()
    if key.endswith(".0"):  # 16.0 from a YAML float
        key = key[:-2]
    if isinstance(value, bool) or key not in PRECISION_ALIASES:
        raise ConfigError(
            "lightly.trainer.precision",
            f"got {value!r}; allowed: 32, 16, bf16, 64 or Lightning 2's "
            + ", ".join(sorted(set(PRECISION_ALIASES.values()))),
        )
    return PRECISION_ALIASES[key]


def single_device_count(value: Any, key: str) -> int | None:
    """``lightly.trainer.gpus`` / ``.devices``: None (auto), 0 (gpus only: the CPU) or 1; no multi-GPU."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    text = str(value).strip()
    allowed = ("0", "1") if key.endswith("gpus") else ("1",)
    if isinstance(value, bool) or text not in allowed:
        raise ConfigError(
            key,
            f"got {value!r}; allowed: null or auto (the GPU when present), {' or '.join(allowed)} -- a "
            "training task uses one device (multi-GPU training is not supported)",
        )
    return int(text)


def _validate_training(cfg: DictConfig) -> None:
    """The ``lightly.*`` training keys (checked even with training off: a bad value is a bad config)."""
    lc = cfg.lightly
    tr = lc.trainer
    me = tr.max_epochs
    _need(
        _is_int(me) and me >= 0,
        "lightly.trainer.max_epochs",
        f"got {me!r}; allowed: an int >= 0 (0 = no training step)",
    )
    normalise_precision(_plain(tr.precision))
    single_device_count(_plain(tr.gpus), "lightly.trainer.gpus")
    single_device_count(_plain(tr.devices), "lightly.trainer.devices")
    acc = _plain(tr.accelerator)
    _need(
        acc is None or str(acc).lower() in ACCELERATORS,
        "lightly.trainer.accelerator",
        f"got {acc!r}; allowed: {', '.join(ACCELERATORS)} (or null = auto)",
    )
    t = lc.criterion.temperature
    _need(t > 0, "lightly.criterion.temperature", f"got {t!r}; allowed: a number > 0")
    mb = lc.criterion.memory_bank_size
    _need(mb >= 0, "lightly.criterion.memory_bank_size", f"got {mb!r}; allowed: an int >= 0 (0 = no bank)")
    lr = lc.optimizer.lr
    _need(lr > 0 and math.isfinite(lr), "lightly.optimizer.lr", f"got {lr!r}; allowed: a number > 0")
    wd = lc.optimizer.weight_decay
    _need(wd >= 0, "lightly.optimizer.weight_decay", f"got {wd!r}; allowed: a number >= 0")
    co = lc.collate
    for k in ("cj_prob", "random_gray_scale", "gaussian_blur", "vf_prob", "hf_prob", "rr_prob"):
        v = co[k]
        _need(0 <= v <= 1, f"lightly.collate.{k}", f"got {v!r}; allowed: a probability in [0, 1]")
    for k in ("cj_bright", "cj_contrast", "cj_sat"):
        _need(co[k] >= 0, f"lightly.collate.{k}", f"got {co[k]!r}; allowed: a number >= 0")
    _need(
        0 <= co.cj_hue <= 0.5, "lightly.collate.cj_hue", f"got {co.cj_hue!r}; allowed: a number in [0, 0.5]"
    )
    _need(
        0 < co.min_scale <= 1,
        "lightly.collate.min_scale",
        f"got {co.min_scale!r}; allowed: a number in (0, 1]",
    )
    sig = _plain(co.sigmas)
    _need(
        isinstance(sig, list)
        and len(sig) == 2
        and all(_is_num(v) and v > 0 for v in sig)
        and sig[0] <= sig[1],
        "lightly.collate.sigmas",
        f"got {sig!r}; allowed: [min, max] with 0 < min <= max",
    )
    rr = _plain(co.rr_degrees)
    _need(
        rr is None or _is_num(rr) or (isinstance(rr, list) and len(rr) == 2 and all(_is_num(v) for v in rr)),
        "lightly.collate.rr_degrees",
        f"got {rr!r}; allowed: null (90-degree turns), a number x (angle in [-x, x]) or [min, max]",
    )
    k = lc.checkpoint_callback.save_top_k
    _need(k >= -1, "lightly.checkpoint_callback.save_top_k", f"got {k!r}; allowed: -1 (all), 0, or more")
    dp = _plain(lc.checkpoint_callback.dirpath)
    _need(
        dp is None or (isinstance(dp, str) and not dp.startswith(("s3://", "gs://"))),
        "lightly.checkpoint_callback.dirpath",
        f"got {dp!r}; allowed: null (the run's checkpoints/ folder) or a local folder",
    )
    d = lc.summary_callback.max_depth
    _need(d >= -1, "lightly.summary_callback.max_depth", f"got {d!r}; allowed: -1 (all), 0, or more")


def validate(cfg: DictConfig) -> None:
    """Check every value; raise :class:`ConfigError` naming the first bad key and what is allowed."""
    sc = cfg.stopping_condition
    n = _plain(sc.n_samples)
    _need(
        _is_num(n) and (n == -1 or (_is_int(n) and n >= 1) or (isinstance(n, float) and 0 < n <= 1)),
        "stopping_condition.n_samples",
        f"got {n!r}; allowed: an int >= 1 (a count), a float in (0, 1] (a fraction of the input), or -1",
    )
    md = _plain(sc.min_distance)
    _need(
        _is_num(md) and (md == -1 or md >= 0) and math.isfinite(md),
        "stopping_condition.min_distance",
        f"got {md!r}; allowed: a distance >= 0, or -1 (inactive)",
    )
    selection = _plain(cfg.selection_config)
    if selection not in (None, "", {}):
        clash = [
            key
            for key, on in (
                ("method", cfg.method != "coreset"),
                ("stopping_condition.n_samples", n_samples_active(n)),
                ("stopping_condition.min_distance", md != -1),
            )
            if on
        ]
        _need(
            not clash,
            "selection_config",
            f"cannot be combined with {' and '.join(clash)}: selection_config sets the strategies and the "
            "budget; remove one of them",
        )
        _need(
            isinstance(selection, dict | str),
            "selection_config",
            f"got {type(selection).__name__}; allowed: a mapping, or the path of a YAML/JSON file",
        )
        _need(
            cfg.selected_sequence_length == 1,
            "selected_sequence_length",
            "sequence selection does not combine with selection_config; set selected_sequence_length=1",
        )
    _need(cfg.method in METHODS, "method", f"got {cfg.method!r}; allowed: {', '.join(METHODS)}")
    th = cfg.corruptness_check.corruption_threshold
    _need(0 <= th <= 1, "corruptness_check.corruption_threshold", f"got {th!r}; allowed: a number in [0, 1]")
    mp = cfg.corruptness_check.max_image_pixels
    _need(mp >= 1, "corruptness_check.max_image_pixels", f"got {mp!r}; allowed: an int >= 1")
    nex = cfg.n_example_images
    _need(nex >= 0 and nex % 2 == 0, "n_example_images", f"got {nex!r}; allowed: an even number >= 0")
    mem = cfg.memory_requirement_in_GB
    _need(mem > 0, "memory_requirement_in_GB", f"got {mem!r}; allowed: a number > 0")
    size = _plain(cfg.output_image_size)
    _need(
        (_is_int(size) and (size == -1 or size >= 1))
        or (isinstance(size, list) and len(size) == 2 and all(_is_int(s) and s >= 1 for s in size)),
        "output_image_size",
        f"got {size!r}; allowed: -1 (keep), an int >= 1 (shortest edge) or [height, width]",
    )
    fmt = str(cfg.output_image_format).lower()
    _need(fmt in IMAGE_FORMATS, "output_image_format", f"got {fmt!r}; allowed: {', '.join(IMAGE_FORMATS)}")
    ssl = cfg.selected_sequence_length
    _need(ssl >= 1, "selected_sequence_length", f"got {ssl!r}; allowed: an int >= 1")
    if ssl > 1:
        on = [k for k in ("enable_corruptness_check", "remove_exact_duplicates") if cfg[k]]
        _need(
            not on,
            "selected_sequence_length",
            f"sequence selection does not combine with {' and '.join(on)}; set "
            + " ".join(f"{k}=False" for k in on),
        )
        if _is_int(n) and n != -1:
            _need(n % ssl == 0, "stopping_condition.n_samples", f"got {n}; must be a multiple of {ssl}")
    _need(
        cfg.scorer in SCORERS or cfg.scorer in ("", "none"),
        "scorer",
        f"got {cfg.scorer!r}; allowed: {', '.join(SCORERS)}",
    )
    fp = cfg.scorer_config.frequency_penalty
    _need(fp >= 0, "scorer_config.frequency_penalty", f"got {fp!r}; allowed: a number >= 0")
    ms = cfg.scorer_config.min_score
    _need(0 <= ms <= 1, "scorer_config.min_score", f"got {ms!r}; allowed: a number in [0, 1]")
    lm = cfg.lightly.model
    _need(lm.name in MODEL_NAMES, "lightly.model.name", f"got {lm.name!r}; allowed: {', '.join(MODEL_NAMES)}")
    _need(lm.num_ftrs >= 1, "lightly.model.num_ftrs", f"got {lm.num_ftrs!r}; allowed: an int >= 1")
    _need(lm.out_dim >= 1, "lightly.model.out_dim", f"got {lm.out_dim!r}; allowed: an int >= 1")
    _need(lm.width > 0, "lightly.model.width", f"got {lm.width!r}; allowed: a number > 0")
    isz = cfg.lightly.collate.input_size
    _need(isz >= 8, "lightly.collate.input_size", f"got {isz!r}; allowed: an int >= 8")
    bs = cfg.lightly.loader.batch_size
    _need(bs >= 1, "lightly.loader.batch_size", f"got {bs!r}; allowed: an int >= 1")
    nw = cfg.lightly.loader.num_workers
    _need(nw >= -1, "lightly.loader.num_workers", f"got {nw!r}; allowed: -1 (all cores), 0, or more")
    _validate_training(cfg)
    if not cfg.pretagging:
        for key in ("pretagging_debug", "append_weak_labels"):
            _need(not cfg[key], key, "needs pretagging=True (it uses the pretagging predictions)")
    if cfg.enable_training and cfg.embeddings:
        raise ConfigError(
            "enable_training", "cannot train when precomputed embeddings are given; unset embeddings"
        )
    if cfg.datapool.name is not None:
        name = cfg.datapool.name
        _need(
            isinstance(name, str) and _folder_name_ok(name),
            "datapool.name",
            f"got {name!r}; allowed: a non-empty folder name (not '.' or '..', without '/', '\\' or "
            "control characters)",
        )
    rd = _plain(cfg.run_directory)
    if rd not in (None, ""):
        _need(
            (isinstance(rd, str) or _is_int(rd))
            and not str(rd).startswith("/")
            and all(_folder_name_ok(part) for part in str(rd).split("/")),
            "run_directory",
            f"got {rd!r}; allowed: a relative folder name inside output_dir (parts separated by '/', none of "
            "them empty, '.' or '..')",
        )
    if cfg.input_dir and cfg.datasource.dataset_id and str(cfg.datasource.dataset_id) != cfg.input_dir:
        raise ConfigError(
            "datasource.dataset_id", f"differs from input_dir ({cfg.input_dir!r}); set only one of them"
        )
    _validate_object_level(cfg)
    _check_ranges(cfg)
    _check_locations(cfg)


#: The largest ``object_level.padding``: a box ten times its own size around it is the whole image anyway.
MAX_PADDING = 10.0


def _validate_object_level(cfg: DictConfig) -> None:
    """``object_level.*``: values, and what object-level selection does not combine with."""
    has_pool = cfg.datapool.name not in (None, "") or cfg.datapool.dataset_id not in (None, "")
    ol = cfg.object_level
    pad = _plain(ol.padding)
    _need(
        _is_num(pad) and math.isfinite(pad) and 0 <= pad <= MAX_PADDING,
        "object_level.padding",
        f"got {pad!r}; allowed: a number from 0 to {MAX_PADDING:g} (relative to the box size)",
    )
    name = _plain(ol.crop_dataset_name)
    _need(
        isinstance(name, str) and "/" not in name and "\\" not in name and name not in (".", ".."),
        "object_level.crop_dataset_name",
        f"got {name!r}; allowed: a folder name (no '/'), or '' for <input folder name>-crops",
    )
    task = _plain(ol.task_name)
    _need(isinstance(task, str), "object_level.task_name", f"got {task!r}; allowed: a prediction task name")
    if not task:
        return
    _need(
        not has_pool,
        "object_level.task_name",
        "object-level selection does not work with a datapool yet; unset datapool.name/.dataset_id",
    )
    _need(
        int(cfg.selected_sequence_length) == 1,
        "object_level.task_name",
        "object-level selection selects crops, not sequences; set selected_sequence_length=1",
    )
    if task == "lightly_pretagging":
        _need(
            bool(cfg.pretagging),
            "object_level.task_name",
            "lightly_pretagging is this run's pretagging: set pretagging=True",
        )


def _folder_name_ok(name: str) -> bool:
    """One folder-name part: not empty or blank, not '.'/'..', no separator or control character."""
    return (
        name.strip() != ""
        and name not in (".", "..")
        and "/" not in name
        and "\\" not in name
        and all(c.isprintable() for c in name)
    )


def _in_range(key: str, value: Any) -> None:
    lo, hi, allowed = NUMERIC_RANGES[key]
    _need(
        _is_num(value) and math.isfinite(value) and lo <= value <= hi,
        key,
        f"got {value!r}; allowed: {allowed}",
    )


def _check_ranges(cfg: DictConfig) -> None:
    """Every numeric key finite and inside :data:`NUMERIC_RANGES` (special values were checked before)."""
    special: dict[str, Any] = {
        "stopping_condition.n_samples": lambda v: v == -1 or (isinstance(v, float) and 0 < v <= 1),
        "stopping_condition.min_distance": lambda v: v == -1,
        "output_image_size": lambda v: v == -1,
    }
    for key in NUMERIC_RANGES:
        value = _plain(OmegaConf.select(cfg, key))
        if value is None:  # an optional key left out (typed numeric keys are never None)
            continue
        if key in special and not isinstance(value, bool) and special[key](value):
            continue
        if isinstance(value, list):
            for v in value:
                _in_range(key, v)
        else:
            _in_range(key, value)


#: URI schemes kurate reads and writes (besides local paths).
SCHEMES = ("s3://", "gs://")
#: Keys that name a location: a local path, s3:// or gs://.
LOCATION_KEYS = (
    "input_dir",
    "output_dir",
    "checkpoint",
    "embeddings",
    "relevant_filenames_file",
    "datasource.dataset_id",
    "datapool.dataset_id",
)


def _check_locations(cfg: DictConfig) -> None:
    for key in LOCATION_KEYS:
        _check_location(key, str(OmegaConf.select(cfg, key) or ""))


def _check_location(key: str, value: str) -> None:
    """A location is a local path or ``s3://bucket/...`` / ``gs://bucket/...``."""
    if "://" not in value:
        return
    _need(
        value.startswith(SCHEMES),
        key,
        f"got {value!r}; allowed: a local path, s3://bucket/prefix or gs://bucket/prefix",
    )
    bucket = value.split("://", 1)[1].split("/", 1)[0]
    _need(bool(bucket), key, f"got {value!r}; allowed: a URI with a bucket name (s3://bucket/prefix)")


# --------------------------------------------------------------------------------------------------
# Splitting and saving
# --------------------------------------------------------------------------------------------------


def phase_config(cfg: DictConfig, phase: str) -> dict[str, Any]:
    """Only the keys of ``phase`` (see :data:`PHASE_KEYS`), as plain JSON-able data."""
    group = PHASE_KEYS[phase]
    out: dict[str, Any] = {}
    for f in dataclasses.fields(group):
        out[f.name] = _plain(cfg[f.name])
    return out


def redacted(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain data with the token replaced, for saving and logging."""
    data: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    if data.get("token"):
        data["token"] = REDACTED
    if (data.get("lightly") or {}).get("token"):
        data["lightly"]["token"] = REDACTED
    return data


def to_yaml(data: dict[str, Any]) -> str:
    """YAML text of plain config data (block style, keys in schema order)."""
    return OmegaConf.to_yaml(OmegaConf.create(data))
