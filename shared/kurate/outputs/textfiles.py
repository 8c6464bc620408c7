"""The run's small text outputs: name lists (one per line) and CSV tables in Lightly's dialect."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from kurate.io import storage


def write_lines(uri: str, names: Sequence[str]) -> None:
    """One name per line (``filenames/*.txt``), written in one piece."""
    storage.write_text(uri, "".join(f"{n}\n" for n in names))


def write_rows(uri: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A CSV table with CRLF line ends, as Lightly's CSVs (names with line breaks get quoted)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    w.writerows(rows)
    storage.write_text(uri, buf.getvalue())
