"""kurate-submit against a stand-in Kubeflow Pipelines API on 127.0.0.1 that records every request.

The real kfp.Client talks HTTP to it; the test reads what arrived: the bearer token, the experiment,
the compiled spec with the worker label on every pod, and the per-task keys as run parameters.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from kurate.pipelines.submit import WORKER_LABEL, main

PHASES = ["ingest", "check", "train", "embed", "pretag", "select", "export"]


class StandIn(ThreadingHTTPServer):
    """The endpoints ``kfp.Client().create_run_from_pipeline_package`` calls, answering like KFP's v2beta1."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: StandIn

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def _record(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = {
            "method": self.command,
            "path": urlparse(self.path).path,
            "query": parse_qs(urlparse(self.path).query),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": json.loads(body) if body else None,
        }
        self.server.requests.append(req)
        return req

    def _send(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        req = self._record()
        if req["path"] == "/apis/v2beta1/healthz":
            self._send(200, {"multi_user": False})  # single-user install: no namespace needed
        elif req["path"] == "/apis/v2beta1/experiments":
            self._send(200, {})  # no experiment of that name yet
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        req = self._record()
        if req["path"] == "/apis/v2beta1/experiments":
            self._send(200, {"experiment_id": "exp-1", **req["body"]})
        elif req["path"] == "/apis/v2beta1/runs":
            self._send(
                200,
                {"run_id": "run-42", "experiment_id": "exp-1", "display_name": req["body"]["display_name"]},
            )
        else:
            self._send(404, {"error": "not found"})


@pytest.fixture
def kfp_api():
    server = StandIn()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _overrides(data_root, out):
    return [
        f"input_dir={data_root}",
        f"output_dir={out}",
        "run_directory=nightly",
        "stopping_condition.n_samples=3",
        "lightly.loader.batch_size=8",
    ]


def test_submits_a_run_with_token_label_and_keys(kfp_api, tmp_path, image_folder, capsys, monkeypatch):
    monkeypatch.delenv("LIGHTLY_TOKEN", raising=False)
    data = image_folder(n=4, n_dup=0, corrupt=False)
    argv = [
        "--host",
        kfp_api.url,
        "--experiment",
        "curation",
        "--gpu-count",
        "2",
        *_overrides(data.root, tmp_path / "out"),
        "token=s3cr3t-token",
        "worker_id=gpu-pool-a",
    ]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "run-42" in out.out and "s3cr3t" not in out.out + out.err

    reqs = kfp_api.requests
    assert [(r["method"], r["path"]) for r in reqs] == [
        ("GET", "/apis/v2beta1/healthz"),
        ("GET", "/apis/v2beta1/experiments"),
        ("POST", "/apis/v2beta1/experiments"),
        ("POST", "/apis/v2beta1/runs"),
    ]
    assert all(r["headers"].get("authorization") == "Bearer s3cr3t-token" for r in reqs)
    assert reqs[2]["body"]["display_name"] == "curation"
    assert reqs[1]["query"]["filter"] and "curation" in reqs[1]["query"]["filter"][0]

    run = reqs[3]["body"]
    assert run["experiment_id"] == "exp-1" and run["display_name"] == "kurate nightly (gpu-pool-a)"
    assert "s3cr3t" not in json.dumps(run)  # the token travels in the header only
    spec = run["pipeline_spec"]["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "kurate-curation"
    embed_exec = spec["deploymentSpec"]["executors"]["exec-embed"]["container"]
    assert embed_exec["resources"]["accelerator"]["resourceCount"] == "2"
    platform = run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(platform) == set(spec["deploymentSpec"]["executors"])
    assert all(ex["podMetadata"]["labels"] == {WORKER_LABEL: "gpu-pool-a"} for ex in platform.values())

    params = run["runtime_config"]["parameters"]
    assert set(params) == {f"{p}_config" for p in PHASES} | {"embed_shards"}
    select = json.loads(params["select_config"])
    assert select["stopping_condition"]["n_samples"] == 3  # an int, not 3.0
    assert json.loads(params["embed_config"])["lightly"]["loader"]["batch_size"] == 8
    export = json.loads(params["export_config"])
    assert export["run_output"] == str(tmp_path / "out" / "nightly") and export["worker_id"] == "gpu-pool-a"
    assert "s3cr3t" not in export["config_yaml"]


def test_host_and_token_from_the_environment(kfp_api, tmp_path, image_folder, monkeypatch):
    data = image_folder(n=3, n_dup=0, corrupt=False)
    monkeypatch.setenv("KURATE_KFP_HOST", kfp_api.url)
    monkeypatch.setenv("LIGHTLY_TOKEN", "from-env")
    monkeypatch.setenv("KURATE_GPU_COUNT", "0")
    assert main(_overrides(data.root, tmp_path / "out")) == 0
    run = kfp_api.requests[-1]
    assert run["headers"]["authorization"] == "Bearer from-env"
    spec = run["body"]["pipeline_spec"]["pipeline_spec"]
    assert "accelerator" not in spec["deploymentSpec"]["executors"]["exec-embed"]["container"]["resources"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["stopping_condition.n_samples=0"], "stopping_condition.n_samples"),
        (["no_such_key=1"], "no_such_key"),
        (["worker_id=has space"], "worker_id"),
        (["--gpu-toleration-effect", "Never"], "--gpu-toleration-effect"),
    ],
)
def test_bad_config_fails_before_any_request(kfp_api, tmp_path, image_folder, capsys, extra, message):
    data = image_folder(n=3, n_dup=0, corrupt=False)
    assert main(["--host", kfp_api.url, *_overrides(data.root, tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert kfp_api.requests == []


def test_missing_host_is_a_config_error(tmp_path, image_folder, capsys, monkeypatch):
    monkeypatch.delenv("KURATE_KFP_HOST", raising=False)
    data = image_folder(n=3, n_dup=0, corrupt=False)
    assert main(_overrides(data.root, tmp_path / "out")) == 2
    assert "KURATE_KFP_HOST" in capsys.readouterr().err


def test_endpoint_refusal_is_reported(tmp_path, image_folder, capsys):
    """A host that answers 404 to everything: exit 1 with one readable line, not a traceback."""

    class Nothing(StandIn):
        pass

    server = Nothing()
    server.RequestHandlerClass = type("H", (Handler,), {"do_POST": Handler.do_GET})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        data = image_folder(n=3, n_dup=0, corrupt=False)
        assert main(["--host", server.url, *_overrides(data.root, tmp_path / "out")]) == 1
    finally:
        server.shutdown()
        server.server_close()
    assert "submitting failed" in capsys.readouterr().err


def test_print_params_for_the_other_clients(tmp_path, image_folder, capsys, monkeypatch):
    """--print-params contacts nothing; its kfp-cli lines parse back (as `kfp run create` parses them)
    to exactly the JSON-format parameters, strings staying strings."""
    from kfp.cli.utils.parsing import parse_parameter_value

    monkeypatch.delenv("KURATE_KFP_HOST", raising=False)
    data = image_folder(n=3, n_dup=0, corrupt=False)
    base = _overrides(data.root, tmp_path / "out")
    assert main(["--print-params", "json", "--embed-shards", "3", *base]) == 0
    params = json.loads(capsys.readouterr().out)
    assert (
        params["embed_shards"] == 3
        and json.loads(params["select_config"])["stopping_condition"]["n_samples"] == 3
    )
    assert main(["--print-params", "kfp-cli", "--embed-shards", "3", *base]) == 0
    lines = capsys.readouterr().out.splitlines()
    parsed = dict(line.split("=", 1) for line in lines)
    assert {k: parse_parameter_value(v) for k, v in parsed.items()} == params
