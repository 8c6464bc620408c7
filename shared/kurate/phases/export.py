"""Export phase: the run's outputs in Lightly's layout (file lists, CSVs, dumped images, report.json)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from kurate.errors import ConfigError
from kurate.outputs import export
from kurate.outputs.inputs import read_inputs
from kurate.phases import _entry

INPUTS = ["files_in", "clean_in", "corrupt_in", "duplicates_in", "embeddings_in", "selection_in"]


@_entry.reported("export")
def run_export(
    files_in: str,
    clean_in: str,
    corrupt_in: str,
    duplicates_in: str,
    embeddings_in: str,
    selection_in: str,
    config: dict[str, Any],
    predictions_in: str = "",
) -> dict[str, Any]:
    """Phase function: write all outputs to ``config['run_output']`` (local path or URI)."""
    run_dir = str(config.get("run_output") or "")
    if not run_dir:
        raise ConfigError("output_dir", "missing; set output_dir=<folder or URI>")
    inputs = read_inputs(
        files_in, clean_in, corrupt_in, duplicates_in, embeddings_in, selection_in, predictions_in
    )
    return export.export_run(run_dir, inputs, config)


def main(argv: Sequence[str]) -> int:
    """``python -m kurate.phases.export --files-in P ... [--predictions-in P] --config JSON``."""
    a = _entry.parse(
        argv,
        __doc__ or "",
        INPUTS,
        [],
        optional_inputs={"predictions_in": "predictions (pretag); weak labels and debug images"},
    )
    cfg = _entry.load_json_arg(a.config)
    return _entry.run_main(
        lambda: run_export(
            a.files_in,
            a.clean_in,
            a.corrupt_in,
            a.duplicates_in,
            a.embeddings_in,
            a.selection_in,
            cfg,
            a.predictions_in,
        )
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
