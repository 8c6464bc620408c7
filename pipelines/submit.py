r"""``kurate-submit``: compile the pipeline and start one run of it on a Kubeflow Pipelines endpoint.

    kurate-submit --host https://kfp.example.com input_dir=s3://b/photos output_dir=s3://b/out \\
        stopping_condition.n_samples=0.1 token=$KFP_TOKEN worker_id=gpu-pool-a

It takes the same Hydra overrides (and ``--config-path/--config-name``) as ``kurate``, validates them
here (a bad key fails at once, exit 2, before anything is sent), plans the run folder, compiles the
``kfp`` target with the cluster options (flags or ``KURATE_*`` env, see :mod:`kurate.deploy.cluster`) and
creates the run with ``kfp.Client``:

- the endpoint is ``--host`` or env ``KURATE_KFP_HOST``;
- the spec key ``token`` (or env ``LIGHTLY_TOKEN``) is sent as ``Authorization: Bearer <token>``, never
  printed or stored;
- the spec key ``worker_id`` labels every pod of the run (``kurate.io/worker-id=<id>``; KFP v2 runs
  have no labels of their own) and names the run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kurate.deploy.cluster import ClusterOptions, add_arguments, from_sources
from kurate.errors import ConfigError, KurateError
from kurate.io import storage

HOST_ENV = "KURATE_KFP_HOST"
WORKER_LABEL = "kurate.io/worker-id"
DEFAULT_EXPERIMENT = "kurate"
PARAM_FORMATS = ("json", "kfp-cli")

log = logging.getLogger("kurate.submit")


@dataclass
class Submitted:
    """What was submitted: the run's id, name and output folder."""

    run_id: str
    run_name: str
    run_dir: str
    experiment: str


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kurate-submit",
        description="Compile the kurate pipeline and start a run on a Kubeflow Pipelines endpoint.",
        epilog="Config: the same key=value overrides as `kurate` (Lightly's keys). token= is the bearer "
        "token, worker_id= labels the run's pods.",
    )
    p.add_argument("--host", default=None, help=f"KFP API endpoint (default: env {HOST_ENV})")
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="experiment name (created if missing)")
    p.add_argument("--namespace", default=None, help="Kubeflow profile namespace (multi-user installs)")
    p.add_argument("--service-account", default=None, help="Kubernetes service account of the run's pods")
    p.add_argument(
        "--print-params",
        choices=PARAM_FORMATS,
        default=None,
        help="only validate and print the run's parameters (json: for Vertex, Argo --parameter-file and "
        "kfp.Client; kfp-cli: one `kfp run create` argument per line, for xargs -d '\\n'); contacts nothing",
    )
    p.add_argument("--config-path", "-cp", default=None, help="folder of the YAML config")
    p.add_argument("--config-name", "-cn", default=None, help="YAML config file name")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (Lightly's keys)")
    add_arguments(p)
    return p


def _check_worker_id(worker_id: str) -> str:
    import re

    if worker_id and not re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", worker_id):
        raise ConfigError(
            "worker_id",
            f"got {worker_id!r}; allowed when submitting (it becomes a pod label): up to 63 letters, "
            "digits, '-', '_' or '.', starting and ending with a letter or digit",
        )
    return worker_id


def format_params(params: dict[str, Any], fmt: str) -> str:
    """The run parameters as text: a JSON object, or ``key=value`` lines for ``kfp run create``.

    The kfp CLI parses each value as JSON, so a JSON-string parameter must be given as a JSON string
    literal (each config is ``json.dumps``-ed once more), or it would arrive as a dict.
    """
    if fmt == "json":
        return json.dumps(params, indent=1, sort_keys=True)
    return "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(params.items()))


def _prepare(
    argv: Sequence[str], env: dict[str, str]
) -> tuple[argparse.Namespace, Any, Any, ClusterOptions, str]:
    """Parse, validate and plan (no network): ``(args, cfg, plan, options, worker_id)``."""
    from kurate.config.load import compose_config
    from kurate.plan import make_plan

    args = _parser().parse_args(list(argv))
    if args.config_path and not args.config_name:
        raise ConfigError("--config-name", "missing: --config-path needs --config-name")
    for o in args.overrides:
        if "=" not in o:
            raise ConfigError(o, "not a key=value override (kurate-submit takes flags and Hydra overrides)")
    if not args.print_params and not (args.host or env.get(HOST_ENV, "")):
        raise ConfigError("--host", f"missing: give the KFP endpoint with --host URL or env {HOST_ENV}")
    cfg = compose_config(args.overrides, args.config_path, args.config_name, environ=env)
    if cfg.sanity_check:
        raise ConfigError("sanity_check", "runs locally only; use `kurate sanity_check=True`")
    worker_id = _check_worker_id(str(cfg.worker_id or ""))
    options = from_sources(args, environ=env)
    if worker_id:
        options = from_sources(args, environ=env, pod_labels={**options.pod_labels, WORKER_LABEL: worker_id})
    plan = make_plan(cfg)
    for key, value in (("input_dir", plan.task_configs["ingest"]["input_dir"]), ("output_dir", plan.run_dir)):
        if not storage.is_remote(str(value)):
            log.warning(
                "%s is the local path %s: the cluster's pods must see it at the same path (a mounted volume)",
                key,
                value,
            )
    return args, cfg, plan, options, worker_id


def run_parameters(argv: Sequence[str], environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The pipeline parameters of a run (what every target takes), from ``kurate``'s overrides."""
    from kurate.pipelines.local import pipeline_arguments

    _args, _cfg, plan, options, _wid = _prepare(argv, dict(os.environ if environ is None else environ))
    return pipeline_arguments(plan, options.embed_shards)


def submit(argv: Sequence[str], environ: dict[str, str] | None = None) -> Submitted:
    """Validate, plan, compile and submit; raises :class:`KurateError` before contacting the host."""
    env = dict(os.environ if environ is None else environ)
    args, cfg, plan, options, worker_id = _prepare(argv, env)
    host = args.host or env[HOST_ENV]
    run_name = f"kurate {os.path.basename(plan.run_dir.rstrip('/'))}" + (
        f" ({worker_id})" if worker_id else ""
    )

    import kfp

    from kurate.pipelines.compile import compile_kfp
    from kurate.pipelines.local import pipeline_arguments

    with tempfile.TemporaryDirectory(prefix="kurate-submit-") as tmp:
        package = compile_kfp(os.path.join(tmp, "kurate-curation.yaml"), options)
        client = kfp.Client(
            host=host, existing_token=str(cfg.token) or None, namespace=args.namespace or "kubeflow"
        )
        result = client.create_run_from_pipeline_package(
            package,
            arguments=pipeline_arguments(plan, options.embed_shards),
            run_name=run_name,
            experiment_name=args.experiment,
            namespace=args.namespace,
            service_account=args.service_account,
        )
    return Submitted(
        run_id=str(result.run_id), run_name=run_name, run_dir=plan.run_dir, experiment=args.experiment
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; exit 2 for config errors, 1 for other failures (e.g. the endpoint refused)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if any(a == "--print-params" or a.startswith("--print-params=") for a in args):
            fmt = _parser().parse_args(args).print_params
            print(format_params(run_parameters(args), fmt))
            return 0
        done = submit(args)
    except KurateError as exc:
        print(f"kurate-submit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # the kfp client's HTTP errors come in many types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"kurate-submit: error: submitting failed: {first}", file=sys.stderr)
        return 1
    print(f"kurate-submit: run {done.run_id} ({done.run_name}) started in experiment {done.experiment}")
    print(f"kurate-submit: outputs will be in {done.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
