"""What follows a datapool commit rolls forward; what a killed commit leaves behind is cleaned up.

- The version pointer records the run (its token): a rerun of a run killed after its commit finds it,
  and finishes the derived files instead of selecting again (``find_commit``, ``roll_forward``).
- ``keep_history=False`` removes the previous state only once the run is complete (the rerun of a
  killed run still needs it), and the next commit catches up if that never happened.
- A state folder no version points to (a commit killed before its pointer) is removed by the next
  commit; one that may still be in progress (a version above the latest) is left alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kurate.io import storage
from kurate.pool import datapool

DESC = {"dim": 4, "model": {"name": "resnet-18"}, "input_size": 32, "weights_id": "random:1"}


def _commit(loc, base, names, token, seed=0, **kw):
    x = np.random.default_rng(seed).normal(size=(len(names), 4)).astype(np.float32)
    return datapool.commit(
        loc, base, names, x, [f"h-{n}" for n in names], DESC, run_id="r", run_token=token, **kw
    )


def _states(loc) -> list[str]:
    return sorted(p.name for p in (Path(loc) / datapool.HISTORY).iterdir())


def test_the_pointer_records_the_run_and_find_commit_finds_it(tmp_path):
    loc = str(tmp_path / "pool")
    _commit(loc, 0, ["a.png"], "tok-1")
    _commit(loc, 1, ["b.png"], "tok-2", seed=1)
    _commit(loc, 2, ["c.png"], "tok-3", seed=2)
    found = datapool.find_commit(loc, "tok-2")
    assert found is not None and found.version == 2 and found.pointer["base_version"] == 1
    assert datapool.find_commit(loc, "tok-x") is None


def test_roll_forward_finishes_the_derived_files_of_a_killed_commit(tmp_path):
    loc = str(tmp_path / "pool")
    _commit(loc, 0, ["a.png", "b.png"], "first")
    done = _commit(loc, 1, ["c.png"], "second", seed=1)
    expected = (Path(loc) / datapool.LATEST_CSV).read_bytes()
    (Path(loc) / datapool.LATEST_CSV).unlink()  # killed right after the pointer was created
    (Path(loc) / datapool.MODEL_DIR / datapool.MODEL_JSON).unlink()
    head = datapool.find_commit(loc, "second")
    again = datapool.roll_forward(loc, head, checkpoint="")
    assert (again.version, again.entries, again.added, again.replaced) == (
        done.version,
        done.entries,
        done.added,
        done.replaced,
    )
    assert (Path(loc) / datapool.LATEST_CSV).read_bytes() == expected
    assert (Path(loc) / datapool.MODEL_DIR / datapool.MODEL_JSON).exists()
    assert datapool.latest_version(loc) == 2  # nothing committed twice


def test_keep_history_false_removes_the_previous_state_only_when_the_run_is_done(tmp_path):
    loc = str(tmp_path / "pool")
    _commit(loc, 0, ["a.png"], "first")
    second = _commit(loc, 1, ["b.png"], "second", seed=1, keep_history=False)
    assert len(_states(loc)) == 2  # the rerun of a run killed now still needs version 1's state
    datapool.drop_superseded(loc, second.version)
    assert len(_states(loc)) == 1 and _states(loc)[0].startswith("00000002_")


def test_the_next_commit_catches_up_on_a_superseded_state_never_dropped(tmp_path):
    loc = str(tmp_path / "pool")
    _commit(loc, 0, ["a.png"], "first")
    _commit(loc, 1, ["b.png"], "second", seed=1, keep_history=False)  # run killed before dropping v1
    _commit(loc, 2, ["c.png"], "third", seed=2)  # keep_history=True itself
    assert [s[:8] for s in _states(loc)] == ["00000002", "00000003"]


def test_orphan_states_are_removed_by_the_next_commit_in_progress_ones_are_not(tmp_path):
    loc = str(tmp_path / "pool")
    _commit(loc, 0, ["a.png"], "first")
    hist = Path(loc) / datapool.HISTORY
    orphan = hist / "00000002_20260101T000000Z_killed_deadbeef"  # killed before its pointer
    orphan.mkdir()
    (orphan / "embeddings.npy").write_bytes(b"partial")
    pending = hist / "00000003_20260101T000000Z_other_cafebabe"  # another run, one version ahead
    pending.mkdir()
    _commit(loc, 1, ["b.png"], "second", seed=1)
    names = _states(loc)
    assert orphan.name not in names and pending.name in names and len(names) == 3


def test_a_commit_leaves_no_temp_file_of_a_dead_writer(tmp_path):
    loc = str(tmp_path / "pool")
    _commit(loc, 0, ["a.png"], "first")
    stale = Path(loc) / datapool.VERSIONS / f".tmp-{storage.HOST_TAG}-999999999-x-00000002.json"
    stale.write_text("{}")
    _commit(loc, 1, ["b.png"], "second", seed=1)
    assert not stale.exists()
    pointer = json.loads((Path(loc) / datapool.VERSIONS / "00000002.json").read_text())
    assert pointer["run_token"] == "second"
