"""Every durable write goes through the storage write primitives — so every write is a crash point.

The storage primitives (``kurate.io.storage``: ``atomic_writer``, ``write_bytes``/``write_text``,
``create_exclusive``, ``remove_tree``) are crash points by construction (``kurate.crash``), and the
crash-point walk (tests/crash) kills a run at each of them. A module that writes to disk by itself
(``open(..., "w")``, ``os.replace``, ``shutil.rmtree``, ``np.save(path)``, ``Image.save(path)``, ...)
would escape the walk. This test reads the source of the library, the components and the pipelines
and fails on any such call outside the primitives and the few scratch writes listed below with why.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "shared" / "kurate", ROOT / "components", ROOT / "pipelines"]

#: Modules that ARE the primitives (their writes are the crash points).
PRIMITIVES = {
    "kurate/io/storage.py",
    "kurate/io/s3.py",
    "kurate/io/gcs.py",
    "kurate/io/remote.py",
    "kurate/io/crash.py",
}

#: Writes that are not durable output: (file, function) → why. Keep it short.
SCRATCH = {
    ("kurate/models/training.py", "_frames_on_disk"): "decoded video frames for one training run, in $TMPDIR",
    (
        "kurate/models/training.py",
        "_local_checkpoint_dir",
    ): "a local mirror of a bucket checkpoint folder, in $TMPDIR",
    ("kurate/media/video.py", "open_video"): "a bucket video copied to a temp file for FFmpeg to seek",
    ("kurate/cli.py", "sanity_check"): "the sanity check's own temporary input and output",
    ("kurate/cli.py", "RunLog"): "the run's log (append-only text, not a result; a temp copy for buckets)",
    ("kurate/demo_data.py", "*"): "generates the demo input folder (make demo), not a run output",
    ("kurate/weights.py", "*"): "bakes weights into an image at build time",
    ("kurate/models/weights.py", "*"): "bakes weights into an image at build time",
    (
        "kurate/phases/_entry.py",
        "write_error_record",
    ): "the error record a failed task leaves for the kurate command",
    ("pipelines/local.py", "run_local"): "kfp.local's scratch folder for a bucket run (removed after)",
    ("pipelines/local.py", "_make_scratch"): "a bucket run's local scratch folder and its owner record",
    ("pipelines/local.py", "sweep_scratch"): "removes the local scratch folders of killed bucket runs",
    ("pipelines/local.py", "_task_environment"): "the tasks' $TMPDIR (a scratch folder) and error record",
    ("pipelines/submit.py", "submit"): "the compiled pipeline, in a temp folder, for the upload",
    ("pipelines/compile.py", "*"): "writes the compiled pipeline files (make compile)",
    ("kurate/dropin.py", "ensure_writable_home"): "a HOME for an unknown uid in the all-in-one image",
    ("pipelines/argo_local.py", "_copy"): "moves artifacts between a local Argo run's per-step folders",
    ("pipelines/containers.py", "data_mounts"): "creates an empty datapool folder to mount (no data)",
    ("pipelines/containers.py", "run_kfp_docker"): "the scratch folder and the tasks' error record",
    ("pipelines/containers.py", "run_argo_containers"): "a local Argo run's temporary step folders",
}

WRITE_MODES = set("wax+")
OS_WRITES = {
    "replace",
    "rename",
    "renames",
    "link",
    "symlink",
    "unlink",
    "remove",
    "rmdir",
    "removedirs",
    "mkdir",
    "makedirs",
    "truncate",
    "ftruncate",
    "mkfifo",
}
SHUTIL_WRITES = {"copy", "copy2", "copyfile", "copytree", "move", "rmtree", "copyfileobj"}
SAVE_METHODS = {
    "save",
    "savefig",
    "savez",
    "savez_compressed",
    "savetxt",
    "tofile",
    "write_text",
    "write_bytes",
    "touch",
}
TEMP_CALLS = {"mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryDirectory"}
#: Names that hold an in-memory buffer or a handle a primitive opened: saving into them is fine.
HANDLES = {"buf", "fh", "fout", "out", "spool", "stream", "bio", "handle", "f"}


def _qualname(stack: list[str]) -> str:
    return ".".join(stack) or "<module>"


class _Finder(ast.NodeVisitor):
    def __init__(self) -> None:
        self.stack: list[str] = []
        self.hits: list[tuple[str, int, str]] = []

    def _scope(self, node: ast.AST, name: str) -> None:
        self.stack.append(name)
        self.generic_visit(node)
        self.stack.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scope(node, node.name)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scope(node, node.name)

    def visit_Call(self, node: ast.Call) -> None:
        what = self._write(node)
        if what:
            self.hits.append((_qualname(self.stack), node.lineno, what))
        self.generic_visit(node)

    @staticmethod
    def _write(node: ast.Call) -> str:
        f = node.func
        if isinstance(f, ast.Name) and f.id == "open":
            mode = (
                node.args[1]
                if len(node.args) > 1
                else next((k.value for k in node.keywords if k.arg == "mode"), None)
            )
            if (
                isinstance(mode, ast.Constant)
                and isinstance(mode.value, str)
                and WRITE_MODES & set(mode.value)
            ):
                return f"open(..., {mode.value!r})"
            return ""
        if not isinstance(f, ast.Attribute):
            return ""
        base = f.value.id if isinstance(f.value, ast.Name) else ""
        if base == "os" and f.attr in OS_WRITES:
            return f"os.{f.attr}"
        if base == "os" and f.attr == "open":
            return "os.open"
        if base == "shutil" and f.attr in SHUTIL_WRITES:
            return f"shutil.{f.attr}"
        if base == "tempfile" and f.attr in TEMP_CALLS:
            return f"tempfile.{f.attr}"
        if f.attr in SAVE_METHODS:
            if any(isinstance(a, ast.Name) and a.id in HANDLES for a in node.args):
                return ""  # into a buffer or a handle a primitive opened (torch.save(obj, fh), img.save(buf))
            if f.attr in ("write_text", "write_bytes") and base == "storage":
                return ""
            return f".{f.attr}(...)"
        if f.attr == "open" and node.args:  # Path.open("w")
            mode = node.args[0]
            if (
                isinstance(mode, ast.Constant)
                and isinstance(mode.value, str)
                and WRITE_MODES & set(mode.value)
            ):
                return f".open({mode.value!r})"
        return ""


def _sources():
    """(path, name as in PRIMITIVES/SCRATCH): kurate/... for the library, components/... and pipelines/..."""
    for base in SOURCES:
        for path in sorted(base.rglob("*.py")):
            yield path, path.relative_to(base.parent).as_posix()


def test_no_module_writes_durable_output_outside_the_storage_primitives():
    offenders = []
    for path, rel in _sources():
        if rel in PRIMITIVES:
            continue
        finder = _Finder()
        finder.visit(ast.parse(path.read_text(), str(path)))
        for func, line, what in finder.hits:
            allowed = (
                SCRATCH.get((rel, func)) or SCRATCH.get((rel, "*")) or SCRATCH.get((rel, func.split(".")[0]))
            )
            if not allowed:
                offenders.append(f"{rel}:{line} {func}: {what}")
    assert not offenders, (
        "durable writes must go through kurate.io.storage (atomic_writer, write_bytes, create_exclusive, "
        "remove_tree): they are the crash points the walk kills at. Scratch writes go in SCRATCH with why:\n"
        + "\n".join(offenders)
    )


def test_the_finder_catches_each_kind_of_write():
    src = """
def f(p, img, fig, x):
    open(p, "w").write("x")
    os.replace(p, p + "x")
    shutil.rmtree(p)
    img.save(p)
    fig.savefig(p)
    np.save(p, x)
    Path(p).write_text("x")
    tempfile.mkdtemp()
def g(buf, img):
    img.save(buf, format="PNG")
    open(buf, "rb")
    storage.write_text(buf, "x")
"""
    finder = _Finder()
    finder.visit(ast.parse(src))
    assert [(func, what) for func, _, what in finder.hits] == [
        ("f", "open(..., 'w')"),
        ("f", "os.replace"),
        ("f", "shutil.rmtree"),
        ("f", ".save(...)"),
        ("f", ".savefig(...)"),
        ("f", ".save(...)"),
        ("f", ".write_text(...)"),
        ("f", "tempfile.mkdtemp"),
    ]
