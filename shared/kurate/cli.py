"""``kurate``: the Lightly sampling job's command line — only Hydra overrides, no sub-command.

    kurate input_dir=./photos output_dir=./out stopping_condition.n_samples=0.1 lightly.loader.batch_size=64
    kurate --config-path conf --config-name job stopping_condition.n_samples=100

It runs the same KFP pipeline the clusters run, locally through kfp.local. A failure ends the
command with one plain line and the exit code of the error's class (config 2, datapool updated by
another run 3, other 1; :mod:`kurate.errors`), also when a phase fails inside its task. The run's
log file ``<run>/kurate.log`` keeps everything the run printed and the full traceback; the console
shows the traceback only with ``KURATE_DEBUG=1``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Sequence
from typing import TextIO

from kurate import __version__
from kurate.errors import ConfigError, KurateError, OutputExistsError, debug_enabled, describe
from kurate.io import crash

USAGE = """usage: kurate [--config-path DIR] [--config-name NAME] key=value [key=value ...]

Runs the Lightly-compatible curation pipeline locally (kfp.local). Keys and defaults:
the Lightly sampling config (see the README). Examples:
  kurate input_dir=./photos output_dir=./out stopping_condition.n_samples=0.1
  kurate input_dir=./photos output_dir=./out stopping_condition.min_distance=0.1 dump_dataset=True
  kurate sanity_check=True
A failure prints one line and exits 2 (config), 3 (datapool updated by another run) or 1 (other);
KURATE_DEBUG=1 also prints the traceback, which <run>/kurate.log always keeps.
"""

#: The run's log file, in the run folder.
LOG_NAME = "kurate.log"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


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


def _quiet_kfp(record: logging.LogRecord) -> bool:
    """Console filter: kfp.local's own info lines ("Skipping task ...") are for the log file only."""
    return record.name != "root" or record.levelno >= logging.WARNING


class _Tee(io.TextIOBase):
    """The console while the pipeline runs: every line to the run's log too; ANSI codes only on a terminal."""

    def __init__(self, console: TextIO, log: TextIO) -> None:
        self.console = console
        self.log = log
        self.tty = bool(getattr(console, "isatty", lambda: False)())

    def write(self, text: str) -> int:
        plain = _ANSI.sub("", text)
        self.log.write(plain)
        self.console.write(text if self.tty else plain)
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.console.flush()

    def isatty(self) -> bool:
        return self.tty

    def fileno(self) -> int:
        return self.console.fileno()


class RunLog:
    """``<run>/kurate.log``: what the command logs, every task's output, and the traceback of a failure.

    In a local run folder it is appended to as the run goes (across resumes); for a bucket run
    folder it is kept in a local temp file and appended to the bucket's copy when the command ends.
    """

    def __init__(self, run_dir: str) -> None:
        from kurate.io import storage

        self.uri = storage.join(run_dir, LOG_NAME)
        self.remote = storage.is_remote(run_dir)
        if self.remote:
            fd, self.path = tempfile.mkstemp(prefix="kurate-log-", suffix=".log")
            os.close(fd)
        else:
            os.makedirs(run_dir, exist_ok=True)
            self.path = self.uri
        self.fh: TextIO = open(self.path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        self.handler = logging.StreamHandler(self.fh)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(self.handler)
        self._console: TextIO | None = None

    def capture(self) -> None:
        """From now on the console output (kfp.local's and the tasks') goes to the log too."""
        self._console = sys.stdout
        sys.stdout = _Tee(sys.stdout, self.fh)

    def write(self, text: str) -> None:
        """Add ``text`` (e.g. a traceback) to the log."""
        self.fh.write(text if text.endswith("\n") else text + "\n")
        self.fh.flush()

    def close(self) -> None:
        """Restore the console; a bucket run folder gets the log."""
        if self._console is not None:
            sys.stdout.flush()
            sys.stdout = self._console
            self._console = None
        logging.getLogger().removeHandler(self.handler)
        self.fh.close()
        if self.remote:
            from kurate.io import storage

            try:
                try:
                    before = storage.read_bytes(self.uri)
                except FileNotFoundError:
                    before = b""
                with open(self.path, "rb") as fh:
                    storage.write_bytes(self.uri, before + fh.read())
            finally:
                os.unlink(self.path)


def run(overrides: Sequence[str], config_path: str | None = None, config_name: str | None = None) -> str:
    """Compose the config, plan the run, execute the pipeline locally; returns the run directory.

    Once the run folder is known, any error is written with its traceback to the run's log, and
    carries the log's location (``kurate_log``) for the one line the command prints.
    """
    from kurate.config.load import compose_config
    from kurate.pipelines.containers import RUNNERS, run_in_containers
    from kurate.pipelines.local import run_local
    from kurate.plan import claim_run, finish_complete_run, make_plan

    cfg = compose_config(overrides, config_path, config_name)
    if cfg.sanity_check:
        return sanity_check(list(overrides))
    # Env KURATE_RUNNER=docker|argo: every task in its phase image (kurate.pipelines.containers).
    runner = os.environ.get("KURATE_RUNNER", "subprocess")
    if runner not in ("subprocess", *RUNNERS):
        raise ConfigError("KURATE_RUNNER", f"got {runner!r}; allowed: subprocess, {', '.join(RUNNERS)}")
    # every check first: a bad config is refused before anything is written (a complete run folder
    # is refused by the claim, which also clears what a late kill left there)
    plan = make_plan(cfg, refuse_complete=False, here=runner == "subprocess")  # the tasks run here
    try:
        claim = claim_run(plan)  # the run folder is this run's alone from here on (released at the end)
    except OutputExistsError:
        finish_complete_run(plan.run_dir)  # killed after its report: what it had left to do
        raise
    log = RunLog(claim.run_dir)
    try:
        plan = make_plan(cfg, claim=claim)
        claim.start_heartbeat()
        if plan.resumed:
            logging.getLogger("kurate").warning("resuming the incomplete run in %s", plan.run_dir)
        log.capture()
        if runner == "subprocess":
            run_local(plan)
        else:
            run_in_containers(plan, runner)
    except BaseException as exc:
        log.write(getattr(exc, "detail", "") or traceback.format_exc())
        log.write(f"kurate: error: {describe(exc)[0]}")
        try:
            exc.kurate_log = log.uri  # type: ignore[attr-defined]
        except AttributeError:
            pass
        raise
    finally:
        log.close()
        claim.release()
    return plan.run_dir


def sanity_check(overrides: list[str]) -> str:
    """Run a tiny built-in sample through every phase; raise if anything is off."""
    from kurate.demo_data import make_tiny_dataset
    from kurate.io import storage

    keep = [o for o in overrides if o.split("=", 1)[0].lstrip("+").startswith("lightly.")]
    with tempfile.TemporaryDirectory(prefix="kurate-sanity-") as tmp:
        data = os.path.join(tmp, "input")
        info = make_tiny_dataset(data)
        run_dir = run(
            [
                f"input_dir={data}",
                f"output_dir={os.path.join(tmp, 'out')}",
                "run_directory=sanity",
                "stopping_condition.n_samples=3",
                "lightly.loader.num_workers=0",
                *keep,
            ]
        )
        report = json.loads(storage.read_text(storage.join(run_dir, "report.json")))
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
    for handler in logging.getLogger().handlers:  # kfp.local's chatter stays in the run's log
        handler.addFilter(_quiet_kfp)
    crash.prepare_run()  # the tasks learn this command's pid (crash tests: KURATE_CRASH_KILL=run)
    try:
        overrides, path, name = parse_argv(args)
        result = run(overrides, path, name)
    except Exception as exc:  # every failure ends as one plain line and its class's exit code
        text, code = describe(exc)
        if debug_enabled():
            detail = getattr(exc, "detail", "") or traceback.format_exc()
            sys.stderr.write(detail if detail.endswith("\n") else detail + "\n")
        where = getattr(exc, "kurate_log", "")
        print(f"kurate: error: {text}" + (f" (details: {where})" if where else ""), file=sys.stderr)
        return code
    if result.startswith("sanity check"):
        print(f"kurate: {result}")
    else:
        print(_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
