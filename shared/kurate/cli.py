"""``kurate``: the Lightly sampling job's command line — only Hydra overrides, no sub-command.

    kurate input_dir=./photos output_dir=./out stopping_condition.n_samples=0.1 lightly.loader.batch_size=64
    kurate --config-path conf --config-name job stopping_condition.n_samples=100

It runs the same KFP pipeline the clusters run, locally through kfp.local.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence

from kurate import __version__
from kurate.errors import ConfigError, KurateError

USAGE = """usage: kurate [--config-path DIR] [--config-name NAME] key=value [key=value ...]

Runs the Lightly-compatible curation pipeline locally (kfp.local). Keys and defaults:
the Lightly sampling config (see the README). Examples:
  kurate input_dir=./photos output_dir=./out stopping_condition.n_samples=0.1
  kurate input_dir=./photos output_dir=./out stopping_condition.min_distance=0.1 dump_dataset=True
  kurate sanity_check=True
"""


def parse_argv(argv: Sequence[str]) -> tuple[list[str], str | None, str | None]:
    """Split argv into Hydra overrides and the optional --config-path/--config-name."""
    overrides: list[str] = []
    path = name = None
    it = iter(argv)
    for arg in it:
        for flag in ("--config-path", "-cp", "--config-name", "-cn"):
            if arg == flag or arg.startswith(flag + "="):
                value = arg.split("=", 1)[1] if "=" in arg else next(it, None)
                if value is None:
                    raise ConfigError(flag, "needs a value")
                if flag in ("--config-path", "-cp"):
                    path = value
                else:
                    name = value
                break
        else:
            if "=" not in arg:
                raise ConfigError(
                    arg, "not a key=value override (kurate takes only Hydra overrides, no sub-command)"
                )
            overrides.append(arg)
    if path and not name:
        raise ConfigError("--config-name", "missing: --config-path needs --config-name")
    return overrides, path, name


def _summary(run_dir: str) -> str:
    from kurate.io import storage

    report = json.loads(storage.read_text(storage.join(run_dir, "report.json")))
    c = report["counts"]
    html = (report.get("report_files") or {}).get("html")
    everything = (report.get("selection") or {}).get("stop_reason") == "no stopping condition"
    return (
        f"kurate: done. {c['available']} input(s): {c['corrupt']} corrupt, {c['duplicate']} duplicate, "
        f"{c['selected']} selected, {c['removed']} removed"
        + (f", {c['seen']} already in the datapool" if "seen" in c else "")
        + (" (no stopping condition: every clean sample is selected)" if everything else "")
        + ".\n"
        f"kurate: outputs in {run_dir}\n"
        + (
            f"kurate: report in {storage.join(run_dir, html)}"
            if html
            else "kurate: no report.html (upload_report=False)"
        )
    )


def run(overrides: Sequence[str], config_path: str | None = None, config_name: str | None = None) -> str:
    """Compose the config, plan the run, execute the pipeline locally; returns the run directory."""
    from kurate.config.load import compose_config
    from kurate.pipelines.containers import RUNNERS, run_in_containers
    from kurate.pipelines.local import run_local
    from kurate.plan import make_plan

    cfg = compose_config(overrides, config_path, config_name)
    if cfg.sanity_check:
        return sanity_check(list(overrides))
    # Env KURATE_RUNNER=docker|argo: every task in its phase image (kurate.pipelines.containers).
    runner = os.environ.get("KURATE_RUNNER", "subprocess")
    if runner not in ("subprocess", *RUNNERS):
        raise ConfigError("KURATE_RUNNER", f"got {runner!r}; allowed: subprocess, {', '.join(RUNNERS)}")
    plan = make_plan(cfg, here=runner == "subprocess")  # the tasks run in this environment
    if plan.resumed:
        logging.getLogger("kurate").warning("resuming the incomplete run in %s", plan.run_dir)
    if runner == "subprocess":
        run_local(plan)
    else:
        run_in_containers(plan, runner)
    return plan.run_dir


def sanity_check(overrides: list[str]) -> str:
    """Run a tiny built-in sample through every phase; raise if anything is off."""
    from kurate.config.load import compose_config
    from kurate.demo_data import make_tiny_dataset
    from kurate.io import storage
    from kurate.pipelines.local import run_local
    from kurate.plan import make_plan

    keep = [o for o in overrides if o.split("=", 1)[0].lstrip("+").startswith("lightly.")]
    with tempfile.TemporaryDirectory(prefix="kurate-sanity-") as tmp:
        data = os.path.join(tmp, "input")
        info = make_tiny_dataset(data)
        cfg = compose_config(
            [
                f"input_dir={data}",
                f"output_dir={os.path.join(tmp, 'out')}",
                "run_directory=sanity",
                "stopping_condition.n_samples=3",
                "lightly.loader.num_workers=0",
                *keep,
            ]
        )
        plan = make_plan(cfg)
        run_local(plan)
        report = json.loads(storage.read_text(storage.join(plan.run_dir, "report.json")))
        counts = report["counts"]
        expected_bad = len(info["corrupt"]) + len(info["exact_duplicates"])
        if counts["selected"] != 3 or counts["corrupt"] + counts["duplicate"] != expected_bad:
            raise KurateError(f"sanity check failed: unexpected counts {counts}")
    return "sanity check passed: every phase ran on the built-in sample"


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code (2 for config errors, 1 for other failures)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    if "--version" in args:
        print(f"kurate {__version__}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        overrides, path, name = parse_argv(args)
        result = run(overrides, path, name)
    except KurateError as exc:
        print(f"kurate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except RuntimeError as exc:  # kfp.local: a task failed; its own log above says why
        print(f"kurate: error: the pipeline failed: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    if result.startswith("sanity check"):
        print(f"kurate: {result}")
    else:
        print(_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
