"""Regenerate the golden compiled spec after a reviewed change: python -m tests.compile.update_golden."""

from pathlib import Path

from kurate.pipelines.compile import compile_kfp

if __name__ == "__main__":
    out = Path(__file__).parent / "golden" / "kurate-curation.yaml"
    out.parent.mkdir(exist_ok=True)
    print(compile_kfp(str(out)))
