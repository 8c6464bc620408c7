"""Entry point of the all-in-one ``kurate`` image: the drop-in for Lightly's sampling image.

    docker run --rm -v IN:/home/input_dir:ro -v OUT:/home/shared_dir --ipc=host <image> token=... KEY=VALUE

takes the same arguments as ``kurate`` (Hydra overrides; ``--help``; ``sanity_check=True``) and returns its
exit code. The image sets ``KURATE_INPUT_DIR=/home/input_dir`` and ``KURATE_OUTPUT_DIR=/home/shared_dir``,
the defaults of ``input_dir`` and ``output_dir``, so every relative path (``checkpoint``, ``embeddings``,
``relevant_filenames_file``, ``pretagging_config``) is read from the shared directory, as Lightly's image did.

Lightly's image ran as root. This one starts as root only to become the owner of the shared directory, so
the outputs belong to (and can be deleted by) whoever owns that folder on the host; a root-owned folder
(one the engine created) keeps root, as Lightly did. ``docker run --user UID:GID`` works too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
from collections.abc import Sequence

SHARED_DIR = "/home/shared_dir"


def become_owner_of(folder: str) -> tuple[int, int] | None:
    """Running as root: switch to the uid/gid that own ``folder`` (when that is not root); returns them."""
    if os.geteuid() != 0:
        return None
    try:
        st = os.stat(folder)
    except OSError:
        return None
    if st.st_uid == 0:
        return None
    os.setgroups([])
    os.setgid(st.st_gid)
    os.setuid(st.st_uid)
    return st.st_uid, st.st_gid


def ensure_writable_home() -> None:
    """A uid the image does not know (``--user``, the shared dir's owner) gets a scratch ``HOME``."""
    home = os.environ.get("HOME", "")
    if not home or not os.access(home, os.W_OK):
        os.environ["HOME"] = tempfile.mkdtemp(prefix="kurate-home-")


def _terminate(signum: int, _frame: object) -> None:
    # As PID 1 the process ignores SIGTERM unless it handles it (`docker stop` would wait, then kill), and
    # kfp.local waits for the running task's process: pass the signal on to the whole process group.
    signal.signal(signum, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.killpg(os.getpgrp(), signum)
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Become the shared directory's owner, then run ``kurate`` with ``argv``; its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    become_owner_of(os.environ.get("KURATE_OUTPUT_DIR", SHARED_DIR))
    ensure_writable_home()
    signal.signal(signal.SIGTERM, _terminate)
    from kurate.cli import main as kurate_main

    return kurate_main(args)


if __name__ == "__main__":
    sys.exit(main())
