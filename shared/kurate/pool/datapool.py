"""The datapool: the samples selected by earlier runs, kept across runs and updated atomically.

Layout at the datapool location (a local folder or a bucket prefix; default
``<output_dir>/datapool/<name>``, or ``datapool.dataset_id``)::

    versions/<v:08d>.json          one small pointer per committed state; the highest is current
    history/<v:08d>_<time>_<run>_<token>/
        embeddings.npy, filenames.csv, meta.json    the state, as an embeddings artifact (raw float32)
        sha256.txt                                  content hash of each entry (same order)
        processed.csv                               filename,sha256 of every sample any run considered
        datapool.csv                                Lightly's layout (filenames, embedding_*, labels)
        weak_labels.json                            pretagging predictions of the entries (append_weak_labels)
    datapool_latest.csv            copy of the current state's datapool.csv (Lightly's name)
    model/model.json               the model the embeddings come from (+ model/checkpoint.* if given)
    checkpoint_latest.ckpt         the model trained by the run that made the current state (enable_training)
    weak_labels_latest.json        copy of the current state's weak_labels.json (append_weak_labels)
    samples/                       the selected samples themselves (upload_dataset)
    cache/embeddings/              the content-addressed embedding cache (kurate.pool.embed_cache)

**Commit protocol** (no lock server, the same on every store): a run reads version ``v`` when it is
planned and uses exactly that state. To commit, it writes the new state under a fresh unique folder
name (nothing refers to it yet), then creates ``versions/<v+1>.json`` with
:func:`kurate.io.storage.create_exclusive` (a local hard link, S3 ``If-None-Match: *``, GCS
``ifGenerationMatch=0``): of two runs that read ``v``, exactly one creates it; the other sees the
precondition fail, removes its unreferenced folder and stops with :class:`DatapoolConflictError`.
Readers only follow pointers, so a half-written state is never visible; a rerun reads ``v+1`` and
succeeds.

**What follows a commit rolls forward.** The pointer records the committing run (``run_token``, the
run folder's token, :mod:`kurate.io.runfolder`): a rerun of a run killed after its commit finds it
(:func:`find_commit`), selects against the same base state again, and :func:`roll_forward` finishes
the derived files instead of committing twice. ``keep_history=False`` removes the previous state only
once the run is complete (:func:`drop_superseded`; the rerun of a killed run still needs it); the next
commit catches up if that never happened. A state folder no version points to (a commit killed
before its pointer) is removed by the next commit that reaches its version; the temp files of dead
writers go at the same time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kurate.errors import DatapoolConflictError, DatapoolError
from kurate.io import embeddings_io, filelist, storage

log = logging.getLogger("kurate.pool.datapool")

FORMAT = "kurate.datapool/1"
VERSIONS = "versions"
HISTORY = "history"
HASHES_FILE = "sha256.txt"
PROCESSED_FILE = "processed.csv"
STATE_CSV = "datapool.csv"
LATEST_CSV = "datapool_latest.csv"
MODEL_DIR = "model"
MODEL_JSON = "model.json"
#: The model trained by the run that made the current state (enable_training), Lightly's file name.
LATEST_CHECKPOINT = "checkpoint_latest.ckpt"
#: append_weak_labels: the pretagging predictions of the state's entries (in each state folder; latest copy).
WEAK_LABELS = "weak_labels.json"
LATEST_WEAK_LABELS = "weak_labels_latest.json"
SAMPLES_DIR = "samples"
CACHE_DIR = "cache/embeddings"
#: Sub-list of the check phase's clean artifact: the samples already in the datapool.
SEEN_LIST = "seen"
_VERSION_FILE = re.compile(r"(\d{8})\.json")


@dataclass(frozen=True)
class Head:
    """A committed state: its version and where its files are."""

    version: int
    state: str  # URI of the state folder
    pointer: dict[str, Any]


def location(output_dir: str, name: Any, dataset_id: Any) -> str:
    """The datapool's URI, or '' when no datapool is configured."""
    if dataset_id not in (None, ""):
        return storage.resolve_relative(str(dataset_id), output_dir)
    if name not in (None, ""):
        return storage.join(output_dir, "datapool", str(name))
    return ""


def datasource_pool_name(source: str) -> str:
    """The datapool name a datasource implies (datasource mode): its last path part and a hash of its URI.

    One datasource, one state, wherever the same URI is run from; another datasource never shares it.
    """
    base = _safe(source.rstrip("/").rsplit("/", 1)[-1])[:40]
    return f"datasource-{base}-{hashlib.sha256(source.rstrip('/').encode()).hexdigest()[:10]}"


def read_model(loc: str) -> dict[str, Any] | None:
    """The datapool's ``model/model.json`` (the model its embeddings come from), or None before a commit."""
    try:
        info = json.loads(storage.read_text(storage.join(loc, MODEL_DIR, MODEL_JSON)))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise DatapoolError(f"datapool {loc}: {MODEL_DIR}/{MODEL_JSON} is not valid JSON ({exc})") from exc
    return info if isinstance(info, dict) else None


def latest_version(loc: str) -> int:
    """The highest committed version (0: empty datapool)."""
    best = 0
    root = storage.join(loc, VERSIONS)
    if not storage.is_remote(root) and not storage.local_path(root).is_dir():
        return 0
    for rel in storage.list_files(root):
        m = _VERSION_FILE.fullmatch(rel)
        if m:
            best = max(best, int(m.group(1)))
    return best


def _pointer_uri(loc: str, version: int) -> str:
    return storage.join(loc, VERSIONS, f"{version:08d}.json")


def read_head(loc: str, version: int | None = None) -> Head | None:
    """The state at ``version`` (default: the latest), or None for an empty datapool."""
    v = latest_version(loc) if version is None else int(version)
    if v <= 0:
        return None
    uri = _pointer_uri(loc, v)
    try:
        pointer = json.loads(storage.read_text(uri))
    except FileNotFoundError:
        raise DatapoolError(f"datapool {loc}: version {v} does not exist") from None
    except json.JSONDecodeError as exc:
        raise DatapoolError(f"datapool {loc}: {uri} is not valid JSON ({exc})") from exc
    if pointer.get("format") != FORMAT or not pointer.get("state"):
        raise DatapoolError(f"datapool {loc}: {uri} is not a kurate datapool pointer")
    return Head(version=v, state=storage.join(loc, str(pointer["state"])), pointer=pointer)


def read_hashes(state: str, count: int) -> list[str]:
    """The content hashes of a state's entries (same order as its filenames)."""
    lines = storage.read_text(storage.join(state, HASHES_FILE)).splitlines()
    if not lines or lines[0] != "sha256" or len(lines) - 1 != count:
        raise DatapoolError(f"datapool state {state}: {HASHES_FILE} does not match its {count} entries")
    return lines[1:]


def read_state(state: str, mmap: bool = True) -> tuple[list[str], np.ndarray, list[str], dict[str, Any]]:
    """``(names, raw embeddings (memory-mapped when local), sha256 hashes, meta)`` of a state folder."""
    names, x, meta = embeddings_io.read_embeddings(state, mmap=mmap)
    return names, x, read_hashes(state, len(names)), meta


def seen_index(state: str) -> dict[str, str]:
    """Name → content hash of every sample an earlier run processed (selected or not)."""
    return dict(read_processed(state))


def read_processed(state: str) -> list[tuple[str, str]]:
    """``(name, sha256)`` of every sample the runs committed so far considered for selection."""
    import csv
    import io

    try:
        text = storage.read_text(storage.join(state, PROCESSED_FILE))
    except FileNotFoundError:
        raise DatapoolError(f"datapool state {state}: {PROCESSED_FILE} is missing") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    if next(reader, None) != ["filename", "sha256"]:
        raise DatapoolError(f"datapool state {state}: {PROCESSED_FILE} has no 'filename,sha256' header")
    return [(row[0], row[1]) for row in reader]


def _write_processed(uri: str, rows: Sequence[tuple[str, str]]) -> None:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["filename", "sha256"])
    w.writerows(rows)
    storage.write_text(uri, buf.getvalue())


def filelist_names(text: str) -> list[str]:
    """Names of an embeddings artifact's ``filenames.csv`` text (header ``filename``)."""
    import csv
    import io

    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader, None)
    return [row[0] for row in reader]


def split_seen(clean: filelist.FileList, index: dict[str, str]) -> tuple[list[int], list[int]]:
    """Rows of ``clean`` that are new, and rows the datapool has seen (same name and same sha256).

    A changed file under a known name is new; a row without a hash (e.g. a video frame when dedup
    is off) cannot be recognised and is new.
    """
    hashes = clean.columns.get("sha256") or [""] * len(clean)
    new: list[int] = []
    seen: list[int] = []
    for i, (name, h) in enumerate(zip(clean.names, hashes, strict=True)):
        (seen if h and index.get(name) == h else new).append(i)
    return new, seen


def read_seen(clean_in: str) -> filelist.FileList | None:
    """The samples the check phase found already in the datapool (None when it did not look)."""
    path = storage.join(clean_in, SEEN_LIST)
    if not storage.exists(storage.join(path, "meta.json")):
        return None
    return filelist.read(path)


# --------------------------------------------------------------------------- model identity


def model_description(emb_meta: dict[str, Any]) -> dict[str, Any]:
    """What identifies the embedding space of an embeddings artifact (stored with the datapool)."""
    desc: dict[str, Any] = {"dim": int(emb_meta.get("dim", 0))}
    if emb_meta.get("weights_id"):
        desc.update(
            model=dict(emb_meta.get("model_config") or emb_meta.get("model") or {}),
            input_size=int(emb_meta.get("input_size", 0)),
            weights_id=str(emb_meta["weights_id"]),
        )
    else:
        desc["source"] = str(emb_meta.get("source", ""))
    return desc


def check_compatible(loc: str, stored: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """Raise DatapoolError when this run's embeddings cannot be compared with the datapool's.

    The dimension must match; when both sides were computed by kurate, so must the model settings,
    the input size and the weights. Returns warnings (e.g. precomputed embeddings: model unknown).
    """
    if int(stored.get("dim", -1)) != int(ours.get("dim", -2)):
        raise DatapoolError(
            f"datapool {loc} holds embeddings of dimension {stored.get('dim')} but this run's have "
            f"dimension {ours.get('dim')}; use the datapool's model (lightly.model.num_ftrs) or another "
            "datapool"
        )
    if stored.get("weights_id") and ours.get("weights_id"):
        diffs = [
            f"{k}: datapool {stored.get(k)!r}, this run {ours.get(k)!r}"
            for k in ("model", "input_size", "weights_id")
            if stored.get(k) != ours.get(k)
        ]
        if diffs:
            raise DatapoolError(
                f"datapool {loc} was built with another model ({'; '.join(diffs)}); embed with the same "
                f"checkpoint and lightly.model/collate settings, or use another datapool"
            )
        return []
    return [
        f"datapool {loc}: the model of the datapool or of this run is unknown (precomputed embeddings); "
        f"only the dimension ({ours.get('dim')}) was checked"
    ]


# --------------------------------------------------------------------------- commit


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "run"


def _copy(src: str, dst: str) -> None:
    """Copy one object/file atomically (streamed locally, one read + one write for buckets)."""
    if not storage.is_remote(src) and not storage.is_remote(dst):
        with open(src, "rb") as fin, storage.atomic_writer(dst, "wb") as fout:
            while block := fin.read(1 << 20):
                fout.write(block)
        return
    storage.write_bytes(dst, storage.read_bytes(src))


@dataclass(frozen=True)
class CommitResult:
    """What a commit did."""

    version: int
    state: str
    entries: int
    added: int
    replaced: int


def commit(
    loc: str,
    base_version: int,
    names: Sequence[str],
    embeddings: np.ndarray,
    hashes: Sequence[str],
    description: dict[str, Any],
    *,
    processed: Sequence[tuple[str, str]] = (),
    run_id: str,
    run_token: str = "",
    keep_history: bool = True,
    checkpoint: str = "",
    trained: bool = False,
    weak_labels: dict[str, Any] | None = None,
    labels: Sequence[int] | None = None,
) -> CommitResult:
    """Add (or replace, by name) ``names`` to the state ``base_version`` and commit it as the next version.

    ``processed`` (name, sha256) are the samples this run considered (picked or not): later runs
    with ``datasource.process_all=False`` skip them while their content is unchanged. ``checkpoint`` is
    the model the embeddings come from; ``trained``: this run trained it (it is also copied to
    ``checkpoint_latest.ckpt``). ``weak_labels`` (:func:`kurate.models.pretag.weak_labels` of ``names``,
    append_weak_labels) are stored with the entries; entries kept from the previous state keep theirs.

    ``run_token`` identifies the run across its resumes (:func:`find_commit`); ``keep_history=False``
    is recorded and carried out by :func:`drop_superseded` once the run is complete.

    Raises :class:`DatapoolConflictError` if another run committed since ``base_version`` was read
    (checked first, and enforced by the exclusive create of the pointer).
    """
    current = latest_version(loc)
    if current != base_version:
        raise DatapoolConflictError(_conflict_message(loc, base_version, current))
    new_x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if new_x.shape[0] != len(names) or len(hashes) != len(names):
        raise ValueError("names, embeddings and hashes must have the same length")
    base = read_head(loc, base_version) if base_version else None
    replaced = 0
    seen = dict(read_processed(base.state)) if base is not None else {}
    seen.update(processed)
    seen.update(zip(names, hashes, strict=True))
    carried: dict[str, Any] | None = None
    if base is not None:
        carried = read_weak_labels(base.state)
        old_names, old_x, old_hashes, old_meta = read_state(base.state)
        stored = dict(old_meta.get("model_description") or {})
        check_compatible(loc, stored, description)
        incoming = set(names)
        keep = [i for i, n in enumerate(old_names) if n not in incoming]
        replaced = len(old_names) - len(keep)
        all_names = [old_names[i] for i in keep] + list(names)
        all_hashes = [old_hashes[i] for i in keep] + list(hashes)
        x = np.concatenate([np.asarray(old_x)[keep], new_x]) if len(keep) else new_x
    else:
        all_names, all_hashes, x = list(names), list(hashes), new_x
    version = base_version + 1
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    rel = posixpath.join(HISTORY, f"{version:08d}_{stamp}_{_safe(run_id)}_{uuid.uuid4().hex[:8]}")
    state = storage.join(loc, rel)
    meta = {
        "datapool_format": FORMAT,
        "version": version,
        "base_version": base_version,
        "run_id": run_id,
        "run_token": run_token,
        "time_utc": stamp,
        "added": len(names) - replaced,
        "replaced": replaced,
        "model_description": description,
        "normalized": False,
    }
    embeddings_io.write_embeddings(state, all_names, x, meta)
    storage.write_text(storage.join(state, HASHES_FILE), "".join(f"{h}\n" for h in ["sha256", *all_hashes]))
    _write_processed(storage.join(state, PROCESSED_FILE), sorted(seen.items()))
    with storage.atomic_writer(storage.join(state, STATE_CSV), "w", encoding="utf-8") as fh:
        embeddings_io.write_lightly_csv(fh, all_names, x, embeddings_io.labels_for(all_names))
    merged_labels = _merge_weak_labels(carried, weak_labels, set(all_names) - set(names), set(names))
    if merged_labels is not None:
        storage.write_text(storage.join(state, WEAK_LABELS), json.dumps(merged_labels, indent=1))
    pointer = {
        "format": FORMAT,
        "version": version,
        "base_version": base_version,
        "state": rel,
        "run_id": run_id,
        "run_token": run_token,
        "created": time.time(),
        "time_utc": stamp,
        "keep_history": bool(keep_history),
        "entries": len(all_names),
        "added": len(names) - replaced,
        "replaced": replaced,
        "processed": len(seen),
        "dim": int(x.shape[1]),
        "model_description": description,
    }
    if not storage.create_exclusive(_pointer_uri(loc, version), json.dumps(pointer, indent=1).encode()):
        storage.remove_tree(state)  # nothing refers to it
        raise DatapoolConflictError(_conflict_message(loc, base_version, latest_version(loc)))
    log.info(
        "datapool %s: committed version %d (%d entries, %d new)", loc, version, len(all_names), len(names)
    )
    _after_commit(loc, version, state, description, checkpoint)
    if trained and checkpoint:
        _copy(checkpoint, storage.join(loc, LATEST_CHECKPOINT))
    _tidy(loc, version)
    return CommitResult(version, state, len(all_names), len(names) - replaced, replaced)


def find_commit(loc: str, run_token: str, not_before: float = 0.0) -> Head | None:
    """The version the run ``run_token`` committed, or None.

    Looks back from the latest version while pointers are not older than ``not_before`` (the run's
    start: a run cannot have committed before it started), so it reads a handful of pointers.
    """
    if not run_token:
        return None
    for v in range(latest_version(loc), 0, -1):
        head = read_head(loc, v)
        if head is None:
            return None
        if head.pointer.get("run_token") == run_token:
            return head
        created = head.pointer.get("created")
        if not isinstance(created, int | float) or created < not_before:
            return None
    return None


def roll_forward(loc: str, head: Head, checkpoint: str = "", trained: bool = False) -> CommitResult:
    """Finish what follows the commit ``head`` (the derived files), as :func:`commit` would have."""
    p = head.pointer
    for folder in (loc, storage.join(loc, VERSIONS), storage.join(loc, MODEL_DIR)):
        storage.remove_stale_temps(folder)  # what the killed attempt was writing
    log.info(
        "datapool %s: version %d was committed by this run; finishing its derived files", loc, head.version
    )
    _after_commit(loc, head.version, head.state, dict(p.get("model_description") or {}), checkpoint)
    if trained and checkpoint:
        _copy(checkpoint, storage.join(loc, LATEST_CHECKPOINT))
    return CommitResult(
        head.version, head.state, int(p["entries"]), int(p.get("added", 0)), int(p.get("replaced", 0))
    )


def drop_superseded(loc: str, version: int) -> None:
    """``keep_history=False``: remove the state that ``version`` replaced (once its run is complete)."""
    head = read_head(loc, version)
    if head is None or head.pointer.get("keep_history", True):
        return
    base_version = int(head.pointer.get("base_version") or 0)
    if base_version <= 0:
        return
    base = read_head(loc, base_version)
    if base is not None and base.state != head.state and storage.exists(base.state):
        storage.remove_tree(base.state)


def _tidy(loc: str, latest: int) -> None:
    """After a commit (of ``latest``): remove what killed commits and runs left behind.

    - a state folder of a version ``<= latest`` that its version's pointer does not name (its commit
      was killed before the pointer, or lost the race); a folder of a later version may be another
      run's commit in progress and is left alone;
    - the state the previous version superseded, if that run asked for ``keep_history=False`` and
      was killed before :func:`drop_superseded` (this commit's own is dropped when its run is done);
    - temp files of writers that are gone.
    """
    for folder in (loc, storage.join(loc, VERSIONS), storage.join(loc, MODEL_DIR)):
        storage.remove_stale_temps(folder)
    if latest <= 0:
        return
    by_version: dict[int, set[str]] = {}
    hist = storage.join(loc, HISTORY)
    if storage.is_remote(hist) or storage.local_path(hist).is_dir():
        for rel in storage.list_files(hist):
            folder = rel.split("/", 1)[0]
            m = re.match(r"(\d{8})_", folder)
            if m and "/" in rel:
                by_version.setdefault(int(m.group(1)), set()).add(folder)
    for v, folders in sorted(by_version.items()):
        if v > latest or len(folders) < 2 and v != latest:
            continue
        head = read_head(loc, v)
        named = head.state.rstrip("/").rsplit("/", 1)[-1] if head is not None else ""
        for folder in sorted(folders - {named}):
            log.info("datapool %s: removing %s (no version points to it)", loc, folder)
            storage.remove_tree(storage.join(hist, folder))
    if latest > 1:
        drop_superseded(loc, latest - 1)


def model_checkpoint(loc: str) -> str:
    """The checkpoint the datapool's embeddings come from, or '' when it records none.

    ``checkpoint_latest.ckpt`` of a run that trained, else the copy its first commit made under ``model/``.
    """
    if storage.exists(storage.join(loc, LATEST_CHECKPOINT)):
        return storage.join(loc, LATEST_CHECKPOINT)
    try:
        info = json.loads(storage.read_text(storage.join(loc, MODEL_DIR, MODEL_JSON)))
    except (FileNotFoundError, json.JSONDecodeError):
        return ""
    name = info.get("checkpoint") if isinstance(info, dict) else None
    return storage.join(loc, MODEL_DIR, str(name)) if name else ""


def read_weak_labels(state: str) -> dict[str, Any] | None:
    """The weak labels stored with a state's entries, or None (no run appended any)."""
    try:
        data = json.loads(storage.read_text(storage.join(state, WEAK_LABELS)))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise DatapoolError(f"datapool state {state}: {WEAK_LABELS} is not valid JSON ({exc})") from exc
    return data if isinstance(data, dict) else None


def _merge_weak_labels(
    carried: dict[str, Any] | None, new: dict[str, Any] | None, kept: set[str], added: set[str]
) -> dict[str, Any] | None:
    """Weak labels of the next state: the previous state's for the entries it keeps, this run's for its own.

    Categories are merged by id (this run's name wins where they disagree); each record keeps the
    ``source`` that predicted it.
    """
    records: dict[str, dict[str, Any]] = {}
    categories: dict[int, dict[str, Any]] = {}
    for data, names in ((carried, kept), (new, added)):
        if not data:
            continue
        for cat in data.get("categories") or []:
            categories[int(cat["id"])] = dict(cat)
        source = data.get("source", "")
        for rec in data.get("samples") or []:
            if rec.get("file_name") in names:
                records[str(rec["file_name"])] = {"source": source, **rec}
    if not records:
        return None
    from kurate.models.pretag import WEAK_LABELS_FORMAT

    return {
        "format": WEAK_LABELS_FORMAT,
        "task_type": (new or carried or {}).get("task_type", "object-detection"),
        "categories": [categories[k] for k in sorted(categories)],
        "samples": [records[n] for n in sorted(records)],
    }


def _conflict_message(loc: str, base: int, current: int) -> str:
    return (
        f"datapool {loc} was updated by another run (now at version {current}) after this run read "
        f"version {base}; nothing of this run was added to it. Run again to select against the new state"
    )


def _after_commit(loc: str, version: int, state: str, description: dict[str, Any], checkpoint: str) -> None:
    """Derived files of the current state: datapool_latest.csv and the model (first commit)."""
    model_json = storage.join(loc, MODEL_DIR, MODEL_JSON)
    if not storage.exists(model_json):
        info = dict(description)
        if checkpoint:
            info["checkpoint"] = (
                f"checkpoint{posixpath.splitext(checkpoint.rsplit('/', 1)[-1])[1] or '.ckpt'}"
            )
            _copy(checkpoint, storage.join(loc, MODEL_DIR, info["checkpoint"]))
        storage.create_exclusive(model_json, json.dumps(info, indent=1).encode())
    # A later commit may land while we copy: copy again until the newest state is the one copied.
    copied = state
    for _ in range(5):
        _copy(storage.join(copied, STATE_CSV), storage.join(loc, LATEST_CSV))
        if storage.exists(storage.join(copied, WEAK_LABELS)):
            _copy(storage.join(copied, WEAK_LABELS), storage.join(loc, LATEST_WEAK_LABELS))
        elif storage.exists(storage.join(loc, LATEST_WEAK_LABELS)):  # none of the entries has labels now
            storage.remove_tree(storage.join(loc, LATEST_WEAK_LABELS))
        head = read_head(loc)
        if head is None or head.state == copied:
            return
        copied = head.state
