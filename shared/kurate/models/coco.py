"""torchvision's COCO detectors without torch: their weight files, their classes, where kurate finds them.

kurate never downloads weights at run time. The COCO weights of a torchvision detector are found under
their file name (the basename of torchvision's download URL) in ``$KURATE_WEIGHTS_DIR`` (where an image
built with ``DETECTOR_WEIGHTS`` bakes them, see :mod:`kurate.models.weights`), then in the torch hub
cache (``$TORCH_HOME/hub/checkpoints``, where ``torchvision`` itself keeps what it downloaded). Pure
Python, so the run is checked at start without importing torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: The built-in pretagging detector (``pretagging=True`` without settings, or with Lightly's
#: requirements file): a Faster R-CNN with a ResNet-50 FPN backbone, as Lightly's was, trained on COCO.
BUILTIN_ARCHITECTURE = "fasterrcnn_resnet50_fpn_v2"
#: The classes Lightly's built-in pretagging model detected; the built-in detector keeps only these.
LIGHTLY_CLASSES = ("bicycle", "bus", "car", "motorcycle", "person", "train", "truck")

#: torchvision's COCO_V1 weight file of each detector kurate builds (checked against torchvision's
#: own weights enums in the tests).
WEIGHT_FILES = {
    "fasterrcnn_resnet50_fpn": "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
    "fasterrcnn_resnet50_fpn_v2": "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth",
    "fasterrcnn_mobilenet_v3_large_fpn": "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth",
    "fasterrcnn_mobilenet_v3_large_320_fpn": "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth",
    "retinanet_resnet50_fpn": "retinanet_resnet50_fpn_coco-eeacb38b.pth",
    "retinanet_resnet50_fpn_v2": "retinanet_resnet50_fpn_v2_coco-5905b1c5.pth",
    "fcos_resnet50_fpn": "fcos_resnet50_fpn_coco-99b0c9b7.pth",
    "ssd300_vgg16": "ssd300_vgg16_coco-b556d3b4.pth",
    "ssdlite320_mobilenet_v3_large": "ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
}
DOWNLOAD_BASE = "https://download.pytorch.org/models/"

#: The 91 label ids of torchvision's COCO detectors (index = id; "N/A" ids are never predicted).
COCO_LABELS = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella",
    "N/A", "N/A", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "N/A",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "N/A", "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
WEIGHTS_ENV = "KURATE_WEIGHTS_DIR"


def categories(keep: tuple[str, ...] | list[str] | None = None) -> list[dict[str, object]]:
    """The COCO classes as ``[{"id", "name"}]`` (only ``keep``'s names, when given)."""
    return [
        {"id": i, "name": n}
        for i, n in enumerate(COCO_LABELS)
        if i and n != "N/A" and (keep is None or n in keep)
    ]


def hub_checkpoints_dir(environ: Mapping[str, str] | None = None) -> str:
    """The torch hub cache's weights folder, by torch's own rule (``$TORCH_HOME`` or the XDG cache)."""
    env = os.environ if environ is None else environ
    home = env.get("TORCH_HOME") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "torch"
    )
    return os.path.join(os.path.expanduser(home), "hub", "checkpoints")


def search_dirs(environ: Mapping[str, str] | None = None) -> list[str]:
    """Where COCO weights are looked for, in order."""
    env = os.environ if environ is None else environ
    dirs = [env[WEIGHTS_ENV]] if env.get(WEIGHTS_ENV) else []
    return [*dirs, hub_checkpoints_dir(env)]


def find_weights(architecture: str, environ: Mapping[str, str] | None = None) -> str:
    """The local file holding ``architecture``'s COCO weights, or ``""``."""
    name = WEIGHT_FILES[architecture]
    for d in search_dirs(environ):
        path = os.path.join(d, name)
        if os.path.isfile(path):
            return path
    return ""


def missing_weights_hint(architecture: str, environ: Mapping[str, str] | None = None) -> str:
    """How to get ``architecture``'s COCO weights onto this machine (one line)."""
    name = WEIGHT_FILES[architecture]
    where = " or ".join(search_dirs(environ))
    return (
        f"the COCO weights of {architecture} ({name}) are not in {where}; kurate never downloads at "
        f"run time: build the pretag image with DETECTOR_WEIGHTS=default, or run `python -m "
        f"kurate.models.weights {hub_checkpoints_dir(environ)} --detector {architecture}` once where "
        f"there is internet (or put {DOWNLOAD_BASE}{name} there), or set pretagging_config to your "
        "own detector"
    )
