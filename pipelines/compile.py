"""Compile the curation pipeline to KFP IR YAML (``kfp run create -f``), used by ``make compile``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def compile_kfp(path: str) -> str:
    """Write the KFP IR YAML of the curation pipeline to ``path``."""
    from kfp import compiler

    from kurate.pipelines.curation import curation_pipeline

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    compiler.Compiler().compile(curation_pipeline, package_path=path)
    return path


def main(argv: Sequence[str]) -> int:
    """``python -m kurate.pipelines.compile [--out-dir compiled]``."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out-dir", default="compiled")
    args = p.parse_args(list(argv))
    print(compile_kfp(os.path.join(args.out_dir, "kfp", "kurate-curation.yaml")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
