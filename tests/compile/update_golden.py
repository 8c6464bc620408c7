"""Regenerate the golden compiled specs after a reviewed change: python -m tests.compile.update_golden.

They are compiled with the default cluster options, whatever KURATE_* variables this shell has.
"""

from pathlib import Path

from kurate.deploy.cluster import from_sources
from kurate.pipelines.compile import compile_all

GOLDEN = Path(__file__).parent / "golden"

if __name__ == "__main__":
    for path in compile_all(str(GOLDEN), from_sources(environ={})):
        print(path)
