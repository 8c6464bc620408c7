"""Reading and writing embeddings: kurate's own artifact and Lightly's embeddings CSV.

Two formats, numpy only (no torch), so every phase can read embeddings cheaply:

- The **embeddings artifact** is a folder with ``embeddings.npy`` (float32, N x d, memory-mappable),
  ``filenames.csv`` (header ``filename``, one CSV-quoted row per embedding, same order) and
  ``meta.json`` (``format``, ``count``, ``dim``, ``dtype``, ``normalized`` plus whatever the writer
  adds: model, weights source, ...). ``meta.json`` is written last, so its presence marks a complete
  artifact.
  Optional ``columns.npz`` holds per-row columns (one array per name, aligned with the rows), e.g.
  the ``masked``/``selected`` flags of a precomputed embeddings file; it is written before
  ``meta.json`` too.
- **Lightly's CSV** (``filenames,embedding_0,...,embedding_{d-1},labels``), byte for byte as
  :func:`lightly.utils.io.save_embeddings` writes it for float32 embeddings: Excel dialect (CRLF line
  ends, minimal quoting with doubled quotes) and each float as ``str(numpy.float32)``, the
  shortest text that reads back to the same float32.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from kurate.errors import KurateError
from kurate.io import storage

FORMAT = "kurate.embeddings/1"
EMBEDDINGS_FILE = "embeddings.npy"
FILENAMES_FILE = "filenames.csv"
META_FILE = "meta.json"
COLUMNS_FILE = "columns.npz"

#: Rows formatted / parsed per chunk in the Lightly CSV functions (bounds peak memory).
_CHUNK_ROWS = 16384
_EMBEDDING_COLUMN = re.compile(r"embedding_\d+")
#: Characters that make Python's csv module (QUOTE_MINIMAL, Excel dialect) quote a field.
_NEEDS_QUOTES = re.compile(r'[,"\r\n]')


def _as_matrix(names: Sequence[str], X: Any) -> np.ndarray:
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (N x d), got shape {arr.shape}")
    if arr.shape[0] != len(names):
        raise ValueError(f"{arr.shape[0]} embeddings but {len(names)} filenames")
    return np.ascontiguousarray(arr, dtype=np.float32)


# --------------------------------------------------------------------------- kurate artifact


def write_embeddings(
    path: str,
    names: Sequence[str],
    X: Any,
    meta: dict[str, Any] | None = None,
    columns: dict[str, Any] | None = None,
) -> None:
    """Write the embeddings artifact folder at ``path`` (each file atomically, ``meta.json`` last).

    ``X`` is cast to float32. ``meta`` is stored as given, plus ``format``, ``count``, ``dim`` and
    ``dtype``; ``normalized`` is filled in (rows of unit L2 norm) unless ``meta`` sets it.
    ``columns``: per-row arrays (each of N values) kept in ``columns.npz`` (see :func:`read_columns`).
    """
    names = list(names)
    arr = _as_matrix(names, X)
    out_meta: dict[str, Any] = dict(meta or {})
    if "normalized" not in out_meta:
        norms = np.linalg.norm(arr, axis=1) if arr.size else np.ones(0)
        out_meta["normalized"] = bool(arr.shape[0] > 0 and np.allclose(norms, 1.0, atol=1e-4))
    out_meta.update(format=FORMAT, count=int(arr.shape[0]), dim=int(arr.shape[1]), dtype="float32")

    storage.makedirs(path)
    with storage.atomic_writer(storage.join(path, EMBEDDINGS_FILE), "wb") as fh:
        np.save(fh, arr, allow_pickle=False)
    # Not csv.writer(lineterminator="\n"): it leaves a lone "\r" unquoted, which readers split on.
    text = "".join(["filename\n", *(_csv_field(n) + "\n" for n in names)])
    storage.write_text(storage.join(path, FILENAMES_FILE), text)
    if columns:
        _write_columns(path, columns, len(names))
    storage.write_text(storage.join(path, META_FILE), json.dumps(out_meta, indent=1, sort_keys=True))


def _write_columns(path: str, columns: dict[str, Any], count: int) -> None:
    arrays = {str(k): np.asarray(v) for k, v in columns.items()}
    for k, v in arrays.items():
        if v.shape != (count,) or v.dtype == object:
            raise ValueError(f"column {k!r}: expected {count} numbers, got {v.dtype} with shape {v.shape}")
    buf = io.BytesIO()
    savez: Any = np.savez  # numpy's stub types **arrays as its keyword options
    savez(buf, **arrays)
    storage.write_bytes(storage.join(path, COLUMNS_FILE), buf.getvalue())


def read_columns(path: str) -> dict[str, np.ndarray]:
    """The per-row columns of the embeddings artifact at ``path`` (aligned with its rows); ``{}`` if none."""
    uri = storage.join(path, COLUMNS_FILE)
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        return {}
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except (ValueError, OSError) as exc:
        raise KurateError(f"{uri}: not a readable .npz file ({exc})") from exc


def read_embeddings_meta(path: str) -> dict[str, Any]:
    """Only ``meta.json`` of an embeddings artifact (cheap)."""
    try:
        meta: dict[str, Any] = json.loads(storage.read_text(storage.join(path, META_FILE)))
    except FileNotFoundError as exc:
        raise KurateError(f"{path}: not a (complete) kurate embeddings artifact: no {META_FILE}") from exc
    except json.JSONDecodeError as exc:
        raise KurateError(f"{path}: {META_FILE} is not valid JSON ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise KurateError(f"{path}: unknown embeddings format {meta.get('format')!r} (expected {FORMAT!r})")
    return meta


def read_embeddings(path: str, mmap: bool = True) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Read an embeddings artifact: ``(names, X, meta)``.

    ``X`` is float32 N x d, memory-mapped read-only when ``mmap`` (the default) and the artifact is
    local, so millions of rows cost no RAM until touched.
    """
    meta = read_embeddings_meta(path)
    npy = storage.join(path, EMBEDDINGS_FILE)
    try:
        if storage.is_remote(npy):  # no memory map over a bucket: read the bytes once
            X = np.load(io.BytesIO(storage.read_bytes(npy)), allow_pickle=False)
        else:
            X = np.load(npy, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError as exc:
        raise KurateError(f"{path}: embeddings artifact has no {EMBEDDINGS_FILE}") from exc
    except ValueError as exc:
        raise KurateError(f"{npy}: not a readable .npy array ({exc})") from exc
    if X.ndim != 2 or X.dtype != np.float32:
        raise KurateError(f"{npy}: expected a float32 N x d array, got {X.dtype} with shape {X.shape}")

    try:
        text = storage.read_text(storage.join(path, FILENAMES_FILE))
    except FileNotFoundError as exc:
        raise KurateError(f"{path}: embeddings artifact has no {FILENAMES_FILE}") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header != ["filename"]:
        raise KurateError(f"{path}/{FILENAMES_FILE}: header must be 'filename', got {header!r}")
    names: list[str] = []
    for row in reader:
        if len(row) != 1:
            raise KurateError(
                f"{path}/{FILENAMES_FILE}, line {reader.line_num}: expected 1 field, got {len(row)}"
            )
        names.append(row[0])

    if not (len(names) == X.shape[0] == meta.get("count", X.shape[0])):
        raise KurateError(
            f"{path}: inconsistent embeddings artifact: {len(names)} filenames, {X.shape[0]} embeddings, "
            f"meta.json count {meta.get('count')}"
        )
    if meta.get("dim", X.shape[1]) != X.shape[1]:
        raise KurateError(f"{path}: meta.json says dim {meta.get('dim')} but embeddings have {X.shape[1]}")
    return names, X, meta


# --------------------------------------------------------------------------- Lightly CSV


def _csv_field(value: str) -> str:
    """``value`` as Python's csv module writes it (Excel dialect, QUOTE_MINIMAL)."""
    if _NEEDS_QUOTES.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value


@contextmanager
def _open_text_out(path_or_fh: Any) -> Iterator[IO[str]]:
    if isinstance(path_or_fh, str) or hasattr(path_or_fh, "__fspath__"):
        with storage.atomic_writer(str(path_or_fh), "w", encoding="utf-8") as fh:
            yield fh
    else:
        yield path_or_fh


def write_lightly_csv(
    path_or_fh: Any, names: Sequence[str], X: Any, labels: Sequence[int] | None = None
) -> None:
    """Write embeddings as Lightly's ``embeddings.csv``.

    The bytes are identical to ``lightly.utils.io.save_embeddings`` for float32 embeddings;
    ``labels`` default to 0, as lightly-embed writes them for a flat folder.

    ``path_or_fh`` is a path (written atomically) or a text file opened with ``newline=""``.
    Formats rows in chunks; about 1.5 s per 100k rows of 32 floats.
    """
    names = list(names)
    arr = _as_matrix(names, X)
    n, d = arr.shape
    if labels is None:
        label_text = ["0"] * n
    else:
        label_text = [str(int(lab)) for lab in labels]
        if len(label_text) != n:
            raise ValueError(f"{len(label_text)} labels for {n} embeddings")
    header = ",".join(["filenames", *(f"embedding_{i}" for i in range(d)), "labels"])
    with _open_text_out(path_or_fh) as fh:
        fh.write(header + "\r\n")
        for start in range(0, n, _CHUNK_ROWS):
            stop = min(start + _CHUNK_ROWS, n)
            lines = [
                f"{_csv_field(names[i])},{','.join(map(str, arr[i]))},{label_text[i]}\r\n"
                if d
                else f"{_csv_field(names[i])},{label_text[i]}\r\n"
                for i in range(start, stop)
            ]
            fh.write("".join(lines))


def _parse_chunk(
    path: str, fields: list[str], lines: list[int], columns: list[str], dtype: type
) -> np.ndarray:
    """Convert a chunk of text fields (``len(columns)`` per row) to numbers, naming the first bad one."""
    d = len(columns)
    try:
        return np.array(fields, dtype=dtype).reshape(len(lines), d)
    except (ValueError, OverflowError):
        for row_i, line in enumerate(lines):
            for column, text in zip(columns, fields[row_i * d : (row_i + 1) * d], strict=True):
                try:
                    np.array([text], dtype=dtype)
                except (ValueError, OverflowError):
                    kind = "an integer" if np.issubdtype(dtype, np.integer) else "a number"
                    raise KurateError(
                        f"{path}, line {line}: column {column!r} is not {kind}: {text!r}"
                    ) from None
        raise


@dataclass
class LightlyTable:
    """Everything of a Lightly embeddings CSV: rows, vectors, labels and every other column (raw text)."""

    names: list[str]
    embeddings: np.ndarray  # float32 N x d
    labels: np.ndarray  # int64 N (0 when the file has no labels column)
    extra: dict[str, list[str]] = field(default_factory=dict)  # header -> N values, in file order


def read_lightly_csv(path: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read a Lightly embeddings CSV: ``(names, X float32 N x d, labels int64 N)``.

    Accepts files written by lightly's ``save_embeddings`` / ``lightly-embed`` and by
    :func:`write_lightly_csv`. Columns: ``filenames`` first, then ``embedding_<i>`` columns (taken in
    file order), optional others (see :func:`read_lightly_table`) and ``labels`` (if missing, labels
    are 0). Malformed input raises :class:`KurateError` naming the line.
    """
    t = read_lightly_table(path)
    return t.names, t.embeddings, t.labels


def read_lightly_table(path: str) -> LightlyTable:
    """Read a Lightly embeddings CSV with every column: the other columns come back as raw text.

    Lightly's meta-information columns (``masked``, ``selected``) and any score column a user adds
    are such columns; :func:`flag_column` and :func:`number_column` turn them into arrays.
    """
    try:
        with storage.local_copy(path) as local, open(local, encoding="utf-8", newline="") as fh:
            return _read_lightly_csv(path, fh)
    except FileNotFoundError as exc:
        raise KurateError(f"{path}: embeddings CSV does not exist") from exc


def _read_lightly_csv(path: str, fh: IO[str]) -> LightlyTable:
    reader = csv.reader(fh)
    try:
        header = next(reader, None)
        if not header:
            raise KurateError(f"{path}, line 1: empty file, expected a header 'filenames,embedding_0,...'")
        header = [h.strip() for h in header]
        if header[0] != "filenames":
            raise KurateError(f"{path}, line 1: first column must be 'filenames', got {header[0]!r}")
        emb_cols = [i for i, h in enumerate(header) if _EMBEDDING_COLUMN.fullmatch(h)]
        if not emb_cols:
            raise KurateError(f"{path}, line 1: no 'embedding_<i>' columns in header")
        label_col = header.index("labels") if "labels" in header else None
        other_cols = [i for i in range(1, len(header)) if i not in emb_cols and i != label_col]
        other_names = [header[i] for i in other_cols]
        repeated = sorted({h for h in other_names if other_names.count(h) > 1})
        if repeated:
            raise KurateError(f"{path}, line 1: column {repeated[0]!r} appears more than once")
        ncol, d = len(header), len(emb_cols)
        emb_names = [header[i] for i in emb_cols]
        contiguous = emb_cols == list(range(emb_cols[0], emb_cols[0] + d))
        lo, hi = emb_cols[0], emb_cols[0] + d

        names: list[str] = []
        extra: dict[str, list[str]] = {header[i]: [] for i in other_cols}
        extra_lists = [(i, extra[header[i]]) for i in other_cols]
        blocks: list[np.ndarray] = []
        label_blocks: list[np.ndarray] = []
        fields: list[str] = []
        label_fields: list[str] = []
        lines: list[int] = []

        def flush() -> None:
            blocks.append(_parse_chunk(path, fields, lines, emb_names, np.float32))
            if label_col is not None:
                label_blocks.append(_parse_chunk(path, label_fields, lines, ["labels"], np.int64))
            fields.clear()
            label_fields.clear()
            lines.clear()

        for row in reader:
            if len(row) != ncol:
                what = "an empty row" if not row else f"{len(row)} fields"
                raise KurateError(
                    f"{path}, line {reader.line_num}: expected {ncol} fields like the header, got {what}"
                )
            names.append(row[0])
            if contiguous:
                fields.extend(row[lo:hi])
            else:
                fields.extend(row[i] for i in emb_cols)
            if label_col is not None:
                label_fields.append(row[label_col])
            for i, values in extra_lists:
                values.append(row[i])
            lines.append(reader.line_num)
            if len(lines) >= _CHUNK_ROWS:
                flush()
        if lines:
            flush()
    except csv.Error as exc:
        raise KurateError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise KurateError(f"{path}: not UTF-8 text ({exc})") from exc

    X = np.concatenate(blocks) if blocks else np.zeros((0, d), np.float32)
    if label_col is None:
        labels = np.zeros(len(names), np.int64)
    else:
        labels = np.concatenate(label_blocks).reshape(-1) if label_blocks else np.zeros(0, np.int64)
    return LightlyTable(names, X, labels, extra)


def flag_column(path: str, column: str, values: Sequence[str]) -> np.ndarray:
    """A 0/1 column of a Lightly CSV (``masked``, ``selected``) as uint8; anything else names its line."""
    out = np.zeros(len(values), dtype=np.uint8)
    for i, v in enumerate(values):
        t = v.strip().lower()
        if t in ("1", "1.0", "true"):
            out[i] = 1
        elif t not in ("0", "0.0", "false", ""):
            raise KurateError(f"{path}, line {i + 2}: column {column!r} must be 0 or 1, got {v!r}")
    return out


def number_column(values: Sequence[str]) -> np.ndarray | None:
    """A numeric column as float64 (empty cells are NaN), or None when a cell is not a number."""
    try:
        return np.array([float(v) if v.strip() else np.nan for v in values], dtype=np.float64)
    except ValueError:
        return None


def labels_for(names: Sequence[str]) -> list[int]:
    """Lightly's labels: the index of the top-level subfolder among the sorted subfolders (0 at the root)."""
    classes = sorted({n.split("/", 1)[0] for n in names if "/" in n})
    idx = {c: i for i, c in enumerate(classes)}
    return [idx[n.split("/", 1)[0]] if "/" in n else 0 for n in names]
