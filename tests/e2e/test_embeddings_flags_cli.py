"""End to end: Lightly's meta-information columns (``masked``, ``selected``) of an embeddings file,
as Lightly's docs show them, through the `kurate` command into the lists and the report."""

from __future__ import annotations

import json

import numpy as np

from tests.e2e.test_cli import run_kurate
from tests.helpers import make_image_folder


def test_masked_and_selected_columns_steer_a_whole_run(tmp_path):
    data = make_image_folder(tmp_path / "photos", n=12, n_dup=1)
    names = sorted(data.images)  # the clean samples (the copy and the broken files are not)
    rng = np.random.default_rng(3)
    masked = {names[0], names[5], data.duplicates[0]}  # a duplicate is not a sample: only reported
    selected = {names[2], names[5]}  # names[5] is masked too: masked wins
    lines = ["filenames,embedding_0,embedding_1,embedding_2,masked,selected,labels"]
    for n in [*names, *data.duplicates, *data.corrupt]:
        v = ",".join(f"{float(t):.6f}" for t in rng.standard_normal(3))
        lines.append(f"{n},{v},{int(n in masked)},{int(n in selected)},0")
    out = tmp_path / "out"
    out.mkdir()
    (out / "masked_embeddings.csv").write_text("\r\n".join(lines) + "\r\n")  # relative to output_dir
    proc = run_kurate(
        f"input_dir={data.root}",
        f"output_dir={out}",
        "run_directory=r",
        "embeddings=masked_embeddings.csv",
        "stopping_condition.n_samples=5",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = out / "r"
    sampled = (run / "filenames" / "sampled_filenames.txt").read_text().split()
    removed = (run / "filenames" / "removed_filenames.txt").read_text().split()
    assert len(sampled) == 5 and names[2] in sampled  # kept, and counted in n_samples
    assert names[0] in removed and names[5] in removed  # masked: valid, never selected
    report = json.loads((run / "report.json").read_text())
    sel = report["selection"]
    assert sel["masked"] == 2 and sel["preselected"] == 1 and sel["selected"] == 5
    assert any("both masked and selected" in w for w in report["warnings"])
    assert any("marked masked" in w and data.duplicates[0] in w for w in report["warnings"])
    html = (run / "report.html").read_text()
    assert "already selected" in html and "masked" in html
