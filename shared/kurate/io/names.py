"""Input names are untrusted: the one check that a location built from one stays inside its folder.

A sample's name is its path relative to the input folder: for a local folder what the listing
returns, for a bucket the object key with the input prefix cut off. Object keys are arbitrary
strings: ``data/../../x.jpg``, ``data//x.jpg``, ``/x.jpg`` at the bucket root or a key holding a
NUL are all valid keys. Joined onto a folder (to read the sample, or to write its dumped copy,
debug image, datapool sample) such a name would point somewhere else, or collapse onto another
sample's name. So:

- :func:`unsafe_reason` says why a name is not a clean relative path (a ``..`` or ``.`` segment, an
  empty segment, a leading ``/``, a NUL); ingest lists such samples and check reports them as
  corrupt with that reason, never reading them.
- :func:`inside` is the only way kurate turns an input-derived name into a location below a folder,
  for reading and for writing: it refuses an unsafe name (:class:`UnsafeNameError`) and otherwise
  joins exactly (no segment dropped or collapsed), so the location is inside the folder.

Names that are clean keep every other character as the store has it (spaces, ``%``, ``+``, ``?``,
``#``, a backslash, any Unicode form): nothing is normalised, so two keys are never read as one.
"""

from __future__ import annotations

import os

from kurate.errors import CorruptFileError
from kurate.io import storage


class UnsafeNameError(CorruptFileError):
    """An input-derived name that is not a clean relative path was about to become a location.

    A :class:`~kurate.errors.CorruptFileError`: that sample cannot be used, the run goes on.
    """


def unsafe_reason(name: str) -> str:
    """Why ``name`` is not a clean '/'-separated relative path ('' if it is one)."""
    if not name:
        return "unsafe name: empty"
    if "\x00" in name:
        return "unsafe name: contains a NUL character"
    if name.startswith("/"):
        return (
            "unsafe name: starts with '/' (a key with '//' after the input prefix, or a leading '/' "
            "at the bucket root)"
        )
    segments = name.split("/")
    if ".." in segments:
        return "unsafe name: has a '..' segment (it would point outside its folder)"
    if "." in segments:
        return "unsafe name: has a '.' segment"
    if "" in segments:
        return "unsafe name: has an empty segment ('//' or a trailing '/')"
    return ""


def inside(folder: str, name: str) -> str:
    """The location of ``name`` under ``folder`` (a local path or a bucket URI), joined exactly.

    Raises :class:`UnsafeNameError` if ``name`` is not a clean relative path (see
    :func:`unsafe_reason`), so the result is always ``folder`` itself plus ``/name``.
    """
    reason = unsafe_reason(name)
    if reason:
        raise UnsafeNameError(name, reason)
    if storage.is_remote(folder):
        return f"{folder.rstrip('/')}/{name}"
    if not folder:
        return os.path.join(*name.split("/"))
    return os.path.join(folder, *name.split("/"))
