"""The structured config: every key of the Lightly sampling spec, grouped by the phase that reads it.

User-facing keys are flat and named exactly as Lightly's (``stopping_condition.n_samples``,
``lightly.loader.batch_size``, ...). In code, each phase's keys live in their own dataclass; the
full schema :class:`KurateConfig` inherits them all, so the user sees one flat namespace while each
pipeline task is handed only its own group (changing ``n_samples`` reruns only selection).

Spec: ``../shared/reference/lightly-sampling-config.md`` (read it for the meaning of each key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING  # noqa: F401  (documented convention for required values)

# --------------------------------------------------------------------------------------------------
# lightly.* — passed through to embedding and training, with the Lightly CLI's defaults
# (lightly/cli/config/config.yaml of lightly 1.6).
# --------------------------------------------------------------------------------------------------


@dataclass
class LightlyModel:
    """``lightly.model.*``: the ResNet backbone (lightly.models.ResNetGenerator)."""

    name: str = "resnet-18"  # resnet-9, resnet-18, resnet-34, resnet-50, resnet-101, resnet-152
    out_dim: int = 128  # projection-head output size (training only)
    num_ftrs: int = 32  # embedding size: the backbone's feature vector
    width: float = 1.0  # width multiplier of the ResNet


@dataclass
class LightlyCriterion:
    """``lightly.criterion.*``: NT-Xent loss settings (training)."""

    temperature: float = 0.5  # logits are divided by this
    memory_bank_size: int = 0  # 0 = no memory bank


@dataclass
class LightlyOptimizer:
    """``lightly.optimizer.*``: SGD settings (training)."""

    lr: float = 1.0  # learning rate
    weight_decay: float = 0.00001  # L2 penalty


@dataclass
class LightlyCollate:
    """``lightly.collate.*``: input size (embedding and training) and SimCLR augmentations (training)."""

    input_size: int = 64  # images are resized to input_size x input_size
    cj_prob: float = 0.8  # probability of colour jitter
    cj_bright: float = 0.7  # colour jitter: brightness
    cj_contrast: float = 0.7  # colour jitter: contrast
    cj_sat: float = 0.7  # colour jitter: saturation
    cj_hue: float = 0.2  # colour jitter: hue
    min_scale: float = 0.15  # minimum random-crop scale
    random_gray_scale: float = 0.2  # probability of greyscale
    gaussian_blur: float = 0.5  # probability of Gaussian blur
    sigmas: list[float] = field(default_factory=lambda: [0.2, 2.0])  # blur sigma range
    kernel_size: Any = None  # deprecated in lightly (the blur follows sigmas); accepted with a warning
    vf_prob: float = 0.0  # probability of vertical flip
    hf_prob: float = 0.5  # probability of horizontal flip
    rr_prob: float = 0.0  # probability of random rotation
    rr_degrees: Any = None  # null = 90-degree rotations; x or [min, max] = random angle


@dataclass
class LightlyLoader:
    """``lightly.loader.*``: torch DataLoader settings."""

    batch_size: int = 16  # images per batch (embedding and training)
    shuffle: bool = True  # training only: embedding never shuffles
    num_workers: int = -1  # background loading workers; -1 = all cores, 0 = in-process
    drop_last: bool = True  # training only: embedding never drops rows


@dataclass
class LightlyTrainer:
    """``lightly.trainer.*``: PyTorch Lightning Trainer settings (training)."""

    gpus: Any = None  # Lightning 1.x key; mapped to accelerator/devices by the train phase
    max_epochs: int = 100  # epochs to train; 0 = no training step (embed with the start weights)
    precision: Any = 32  # 32, 16, "bf16-mixed", ...
    enable_model_summary: bool = True  # print the model summary
    accelerator: Any = None  # Lightning 2 key: "cpu", "gpu", "auto"
    devices: Any = None  # Lightning 2 key
    weights_summary: Any = None  # Lightning 1 key of lightly's CLI config; accepted with a warning


@dataclass
class LightlyCheckpointCallback:
    """``lightly.checkpoint_callback.*``: Lightning ModelCheckpoint settings (training)."""

    save_last: bool = True
    save_top_k: int = 1
    dirpath: Any = None


@dataclass
class LightlySummaryCallback:
    """``lightly.summary_callback.*`` (training)."""

    max_depth: int = 1


@dataclass
class LightlyEnvironmentVariableNames:
    """``lightly.environment_variable_names.*``: env vars lightly's CLI set after a command (warning)."""

    lightly_last_checkpoint_path: Any = None
    lightly_last_embedding_path: Any = None
    lightly_last_dataset_id: Any = None


@dataclass
class LightlyConfig:
    """``lightly.*``: the Lightly CLI's own config, passed through to embed and train.

    Besides the keys embed and train read, every key any version of lightly's CLI ``config.yaml`` had is
    accepted (the Docker job took the whole CLI config as ``lightly.*``); those that do nothing here default
    to ``None`` (= not given) and print one warning line when given (:mod:`kurate.config.lightly_keys`).
    """

    model: LightlyModel = field(default_factory=LightlyModel)
    criterion: LightlyCriterion = field(default_factory=LightlyCriterion)
    optimizer: LightlyOptimizer = field(default_factory=LightlyOptimizer)
    collate: LightlyCollate = field(default_factory=LightlyCollate)
    loader: LightlyLoader = field(default_factory=LightlyLoader)
    trainer: LightlyTrainer = field(default_factory=LightlyTrainer)
    checkpoint_callback: LightlyCheckpointCallback = field(default_factory=LightlyCheckpointCallback)
    summary_callback: LightlySummaryCallback = field(default_factory=LightlySummaryCallback)
    pre_trained: bool = True  # use pretrained weights when available locally (never downloaded)
    seed: int = 1  # seed for model init, training and random selection
    environment_variable_names: LightlyEnvironmentVariableNames = field(
        default_factory=LightlyEnvironmentVariableNames
    )
    # Keys of lightly's other CLI commands (upload, download, crop) and lightly 1.0's names; the Docker job
    # took them with the rest of the CLI config but never read them. Each: accepted with a warning.
    input_dir: Any = None  # the container set its own; use input_dir
    output_dir: Any = None  # the container set its own; use output_dir
    checkpoint: Any = None  # the container passed its own; use checkpoint
    embeddings: Any = None  # the container passed its own; use embeddings
    token: Any = None  # the container passed its own; use token (redacted like it)
    crop_padding: Any = None  # lightly-crop
    label_dir: Any = None  # lightly-crop
    label_names_file: Any = None  # lightly-crop
    dataset_id: Any = None  # lightly-upload
    new_dataset_name: Any = None  # lightly-upload
    custom_metadata: Any = None  # lightly-upload
    upload: Any = None  # lightly-upload: full / thumbnails / meta
    resize: Any = None  # lightly-upload (CLI) / the Worker's platform images (v3): resize before upload
    append: Any = None  # lightly-upload
    embedding_name: Any = None  # lightly-upload
    emb_upload_bsz: Any = None  # lightly-upload
    tag_name: Any = None  # lightly-download
    exclude_parent_tag: Any = None  # lightly-download
    data: Any = None  # lightly 1.0
    root: Any = None  # lightly 1.0
    download: Any = None  # lightly 1.0
    from_folder: Any = None  # lightly 1.0
    path_to_folder: Any = None  # lightly 1.0
    path_to_embeddings: Any = None  # lightly 1.0


# --------------------------------------------------------------------------------------------------
# Nested groups of the flat spec
# --------------------------------------------------------------------------------------------------


@dataclass
class CorruptnessCheck:
    """``corruptness_check.*`` (check phase)."""

    corruption_threshold: float = 0.1  # [0, 1]; video frames scoring above it are corrupt
    max_image_pixels: int = 178_956_970  # kurate addition: larger images are decompression bombs


@dataclass
class KurateOptions:
    """``kurate.*``: kurate's own settings, with no Lightly counterpart (a Lightly config never sets them)."""

    strict_jpeg_check: bool = True  # check: also report JPEGs whose compressed data libjpeg finds damaged
    fast_embed_decode: bool = False  # embed: DCT-scaled JPEG decode, faster; embeddings deviate (README)


@dataclass
class StoppingCondition:
    """``stopping_condition.*`` (select phase)."""

    n_samples: Any = -1  # float in (0, 1]: fraction of the input size; int >= 1: count; -1: inactive
    min_distance: float = -1.0  # stop when the next pick is closer than this; -1: inactive


@dataclass
class ScorerConfig:
    """``scorer_config.*`` (select phase, object-frequency scorer)."""

    frequency_penalty: float = 0.25  # weight of each further object of an already-seen class
    min_score: float = 0.9  # scores are rescaled linearly to [min_score, 1]


@dataclass
class ActiveLearning:
    """``active_learning.*`` (select phase; ``method=coral`` / ``active_learning``, Lightly Worker 2.x)."""

    task_name: str = ""  # the prediction task whose active-learning scores weight the selection
    score_name: str = (
        ""  # uncertainty_least_confidence | uncertainty_margin (default) | uncertainty_entropy | ...
    )


@dataclass
class Datapool:
    """``datapool.*`` (datapool update after selection)."""

    name: Any = None  # name of a persistent datapool; None = no datapool
    keep_history: bool = True  # keep every previous datapool state under history/
    dataset_id: Any = None  # URI of the datapool (default <output_dir>/datapool/<name>)
    id: Any = None  # Lightly's name for dataset_id in its docs of 2022-02-24; sets dataset_id


@dataclass
class InputExpiration:
    """``datasource.input_expiration.*``: signed-URL expiry handling of the Worker (warning)."""

    min_days_to_expiration: Any = None
    handling_strategy: Any = None


@dataclass
class ObjectLevel:
    """``object_level.*``: select object crops instead of whole images (every predicted box is a sample)."""

    task_name: str = ""  # prediction task whose boxes are cropped; lightly_pretagging = this run's pretagging
    crop_dataset_name: str = ""  # folder of the selected crops in the run's outputs; '' = <input name>-crops
    padding: float = 0.0  # boxes grow by this fraction of their width and height (0.1 = 10 %) before cropping


@dataclass
class Datasource:
    """``datasource.*`` (ingest phase)."""

    dataset_id: Any = None  # URI of the input, used when input_dir is not given; implies a datapool state
    process_all: bool = False  # False: only samples not seen by an earlier run (datapool)
    enable_datapool_update: bool = True  # add the selected samples to the datapool
    use_frame_count_metadata: bool = False  # videos: frame count from container metadata
    use_redirected_read_url: Any = None  # platform plumbing (signed URLs); warning
    bypass_verify: Any = None  # platform plumbing (access check); warning
    input_expiration: InputExpiration = field(default_factory=InputExpiration)  # platform plumbing; warning


# --------------------------------------------------------------------------------------------------
# The keys of each phase (flat, as the user writes them)
# --------------------------------------------------------------------------------------------------


@dataclass
class Worker:
    """``worker.*``: the Lightly Worker's registration (its docs from 2022-04-25 on)."""

    worker_id: Any = None  # the same as the top-level worker_id (Lightly renamed it); sets it
    force_start: Any = None  # platform plumbing; warning


@dataclass
class Crops:
    """``crops.*`` (Worker config v4): upload object crops to the platform (warning)."""

    enable_upload: Any = None
    enable_upload_for_tasks: Any = None


@dataclass
class Training:
    """``training.*`` (Worker config v3/v4)."""

    task_name: Any = None  # train on the crops of a prediction task; warning (kurate trains on images)


@dataclass
class RunKeys:
    """Read by the ``kurate`` command itself (orchestration, never by a pipeline task)."""

    token: str = ""  # bearer token for a remote KFP API; also env LIGHTLY_TOKEN; never printed or stored
    worker_id: str = ""  # recorded in run metadata; run label when submitting; also env LIGHTLY_WORKER_ID
    sanity_check: bool = False  # run a tiny built-in sample through every phase and exit 0
    worker: Worker = field(default_factory=Worker)
    use_datapool: Any = None  # Worker v3/v4: False = datasource.dataset_id keeps no datapool state


@dataclass
class PlatformKeys:
    """Lightly platform / Worker plumbing (config models v2-v4): accepted, one warning line each.

    Read by no phase (so they never rerun a task); :mod:`kurate.config.lightly_keys` says why each does
    nothing here. ``None`` = not given.
    """

    pretagging_upload: Any = None  # upload the predictions to the platform
    shutdown_when_job_finished: Any = None  # kurate always exits when the run ends
    num_processes: Any = None  # worker tuning
    num_threads: Any = None  # worker tuning
    checkpoint_run_id: Any = None  # a platform run whose checkpoint to use; pass checkpoint= instead
    cache_size: Any = None  # the worker's download cache
    crops: Crops = field(default_factory=Crops)
    training: Training = field(default_factory=Training)


@dataclass
class IngestKeys:
    """Read by the ingest phase: where the input is and which files count."""

    input_dir: str = ""  # folder or URI with the input images
    relevant_filenames_file: str = ""  # file (relative to output_dir) listing the files to process
    datasource: Datasource = field(default_factory=Datasource)


@dataclass
class CheckKeys:
    """Read by the check phase: corrupt files and exact duplicates."""

    enable_corruptness_check: bool = True  # fully decode every image; corrupt ones are listed and skipped
    corruptness_check: CorruptnessCheck = field(default_factory=CorruptnessCheck)
    remove_exact_duplicates: bool = True  # drop byte-identical files, keeping the first by name


@dataclass
class TrainKeys:
    """Read by the train phase (with ``lightly.*``)."""

    enable_training: bool = False  # train a self-supervised model on the input before embedding


@dataclass
class EmbedKeys:
    """Read by the embed phase (with ``lightly.*``)."""

    checkpoint: str = ""  # model checkpoint (relative to output_dir, or absolute/URI)
    embeddings: str = ""  # precomputed Lightly embeddings.csv; no embedding is computed
    lightly: LightlyConfig = field(default_factory=LightlyConfig)
    object_level: ObjectLevel = field(default_factory=ObjectLevel)  # crops are embedded instead of images


@dataclass
class PretagKeys:
    """Read by the pretagging phase."""

    pretagging: bool = False  # run an object detector to pre-tag the input
    pretagging_debug: bool = False  # also write images with the predicted boxes drawn
    pretagging_config: str = ""  # requirements file {class: min count} or settings; empty: built-in detector
    append_weak_labels: bool = False  # store the predictions with the datapool entries


@dataclass
class SelectKeys:
    """Read by the select phase."""

    method: str = "coreset"  # coreset (k-center greedy), random, coral (coreset x AL score), active_learning
    stopping_condition: StoppingCondition = field(default_factory=StoppingCondition)
    # Lightly Worker's selection: {n_samples | proportion_samples, strategies: [{input, strategy}]}, inline
    # or a YAML/JSON file (relative to output_dir, or a URI); replaces method and stopping_condition.
    selection_config: Any = None
    active_learning: ActiveLearning = field(default_factory=ActiveLearning)
    active_learning_score_column_name: str = ""  # method=coral: scores from this column of `embeddings`
    custom_metadata: str = ""  # custom metadata: JSON/CSV file or .lightly/metadata folder (rel. output_dir)
    normalize_embeddings: bool = True  # unit-length embeddings before selection
    selected_sequence_length: int = 1  # videos: select whole blocks of this many frames
    scorer: str = "object-frequency"  # active-learning scorer; only active when predictions exist
    scorer_config: ScorerConfig = field(default_factory=ScorerConfig)


@dataclass
class DatapoolKeys:
    """Read by the datapool update."""

    datapool: Datapool = field(default_factory=Datapool)
    upload_dataset: bool = False  # copy the selected samples into <datapool>/samples/


@dataclass
class ExportKeys:
    """Read by the export phase: where and what to write."""

    output_dir: str = ""  # folder or URI for all outputs
    run_directory: Any = None  # output subfolder for this run instead of a timestamp
    dump_dataset: bool = False  # copy the selected images to data/sampled/
    dump_sampled_embeddings: bool = True  # write data/selected_embeddings.csv
    output_image_size: Any = -1  # dumped images: -1 keep; x shortest edge; [h, w] exact
    output_image_format: str = "png"  # dumped images: png, jpg, ...


@dataclass
class ReportKeys:
    """Read by the report."""

    upload_report: bool = True  # publish the report with the run's outputs
    n_example_images: int = 6  # retained/removed example pairs in the report (even)
    memory_requirement_in_GB: float = 2.0  # cap on the distance matrix used for report statistics
    show_video_sampling_timeline: bool = True  # per-video timeline of selected frames


@dataclass
class KurateKeys:
    """``kurate.*``: kurate-only settings; the plan hands each phase the ones it reads."""

    kurate: KurateOptions = field(default_factory=KurateOptions)


@dataclass
class KurateConfig(
    PlatformKeys,
    KurateKeys,
    ReportKeys,
    ExportKeys,
    DatapoolKeys,
    SelectKeys,
    PretagKeys,
    EmbedKeys,
    TrainKeys,
    CheckKeys,
    IngestKeys,
    RunKeys,
):
    """The whole flat config, as a Lightly user writes it (every key of the spec)."""


#: The key groups in pipeline order, by the name of the phase that reads them.
PHASE_KEYS: dict[str, type] = {
    "run": RunKeys,
    "ingest": IngestKeys,
    "check": CheckKeys,
    "train": TrainKeys,
    "embed": EmbedKeys,
    "pretag": PretagKeys,
    "select": SelectKeys,
    "datapool": DatapoolKeys,
    "export": ExportKeys,
    "report": ReportKeys,
    "platform": PlatformKeys,  # read by no task: Lightly platform plumbing, warned about at start
    "kurate": KurateKeys,
}
