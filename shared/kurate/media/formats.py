"""Which files are media: the extensions kurate lists as images and videos (spec "Listing")."""

from __future__ import annotations

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp", "ppm", "pgm")
VIDEO_EXTENSIONS = ("mp4", "mov", "avi", "mkv", "webm", "m4v")


def extension(name: str) -> str:
    """Lower-case extension without the dot ('' if none)."""
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base else ""
