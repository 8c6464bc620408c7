"""The file-list artifact: which samples a phase hands to the next, and where they live.

On disk a file list is a folder with two files, both written atomically:

- ``meta.json``: ``{"format": "kurate.filelist/1", "root": <input URI>, "count": N, "columns": [...],
  "extra": {...}}``; ``root`` travels with the list so later phases (in other pods) need no shared disk.
- ``files.csv``: a header row, then one row per sample (``filename`` first, then e.g. ``sha256``,
  ``reason``, ``duplicate_of``). CSV quoting keeps names with commas or quotes intact; names with
  newlines never get this far (ingest reports and skips them).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kurate.errors import KurateError
from kurate.io import storage
from kurate.io.names import inside

FORMAT = "kurate.filelist/1"


@dataclass
class FileList:
    """An ordered list of sample names relative to ``root``, with optional per-row columns."""

    root: str
    names: list[str]
    columns: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def column(self, name: str) -> list[str]:
        """One extra column, aligned with ``names``."""
        return self.columns[name]

    def rows(self) -> Iterable[tuple[str, ...]]:
        """(filename, *columns) tuples."""
        cols = list(self.columns.values())
        for i, n in enumerate(self.names):
            yield (n, *(c[i] for c in cols))

    def subset(self, keep: Sequence[int]) -> FileList:
        """A new list with only the rows at ``keep`` (same root and columns)."""
        return FileList(
            root=self.root,
            names=[self.names[i] for i in keep],
            columns={k: [v[i] for i in keep] for k, v in self.columns.items()},
            extra=dict(self.extra),
        )


def write(path: str, flist: FileList) -> None:
    """Write ``flist`` as a file-list artifact folder at ``path``."""
    for k, v in flist.columns.items():
        if len(v) != len(flist.names):
            raise ValueError(f"column {k!r} has {len(v)} rows, expected {len(flist.names)}")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")  # CRLF: a lone \r in a name gets quoted too
    w.writerow(["filename", *flist.columns.keys()])
    w.writerows(flist.rows())
    storage.makedirs(path)
    storage.write_text(storage.join(path, "files.csv"), buf.getvalue())
    meta = {
        "format": FORMAT,
        "root": flist.root,
        "count": len(flist.names),
        "columns": list(flist.columns.keys()),
        "extra": flist.extra,
    }
    storage.write_text(storage.join(path, "meta.json"), json.dumps(meta, indent=1, sort_keys=True))


def read_meta(path: str) -> dict[str, Any]:
    """Only the header of a file list (cheap: no rows are read)."""
    try:
        meta: dict[str, Any] = json.loads(storage.read_text(storage.join(path, "meta.json")))
    except FileNotFoundError as exc:
        raise KurateError(f"{path}: not a kurate file list (no meta.json)") from exc
    if meta.get("format") != FORMAT:
        raise KurateError(f"{path}: unknown file-list format {meta.get('format')!r}")
    return meta


def read(path: str) -> FileList:
    """Read a file-list artifact folder."""
    meta = read_meta(path)
    text = storage.read_text(storage.join(path, "files.csv"))
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    names: list[str] = []
    cols: dict[str, list[str]] = {c: [] for c in header[1:]}
    col_lists = list(cols.values())
    for row in reader:
        names.append(row[0])
        for lst, v in zip(col_lists, row[1:], strict=True):
            lst.append(v)
    if len(names) != meta["count"]:
        raise KurateError(f"{path}: file list is incomplete ({len(names)} rows, header says {meta['count']})")
    return FileList(root=meta["root"], names=names, columns=cols, extra=meta.get("extra", {}))


def sample_uri(root: str, name: str) -> str:
    """The full location of sample ``name`` under ``root``, exactly (the name is untrusted input).

    :class:`~kurate.io.names.UnsafeNameError` for a name that is not a clean relative path: such a
    sample is never read (the check phase lists it as corrupt).
    """
    return inside(root, name)
