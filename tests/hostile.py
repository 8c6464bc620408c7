"""A hostile input folder generated in the tests: entries a real file system can hold and a naive
lister trips over (non-UTF-8 names, symlink loops, FIFOs, sockets, devices), next to valid images
whose names differ only by Unicode normalisation or case, or carry every punctuation mark."""

from __future__ import annotations

import os
import socket
import string
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import draw_image


@dataclass
class Corpus:
    root: Path
    good: list[str] = field(default_factory=list)  # valid images kurate must list, as kurate names them
    #: entries that must be reported and skipped: escaped name as shown → a word its reason contains
    skipped: dict[str, str] = field(default_factory=dict)
    sockets: list[socket.socket] = field(default_factory=list)  # keep bound sockets alive

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def _image(path: Path, i: int) -> None:
    draw_image(i, size=24).save(path, format="PNG")


def make_hostile_corpus(root: Path) -> Corpus:
    """Write the corpus under ``root`` (which must not exist yet) and say what kurate must make of it."""
    root.mkdir(parents=True)
    c = Corpus(root=root)
    i = 0

    def good(name: str) -> None:
        nonlocal i
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _image(path, 1000 + i)
        i += 1
        c.good.append(name)

    # every ASCII punctuation mark ('/' separates folders), one per name and all in one name
    for n, ch in enumerate(sorted(set(string.punctuation) - {"/"})):
        good(f"punct/{n:02d}{ch}x.png")
    good("punct/" + "".join(sorted(set(string.punctuation) - {"/", "."})) + ".png")
    # names that differ only by Unicode normalisation, or only by case
    good(unicodedata.normalize("NFC", "norm/caf\u00e9.png"))
    good(unicodedata.normalize("NFD", "norm/cafe\u0301.png"))
    good("case/Photo.png")
    good("case/photo.png")
    good("case/PHOTO.PNG")
    good("space/ leading.png")
    good("space/trailing .png")
    good("space/back\\slash.png")
    good("unicode/\u732b\U0001f408.png")
    good("deep/" + "/".join(f"d{k}" for k in range(20)) + "/leaf.png")

    raw = os.fsencode(root)
    # a name that is not UTF-8 (Latin-1 'é')
    with open(raw + b"/caf\xe9.png", "wb") as fh:
        draw_image(7, size=24).save(fh, format="PNG")
    c.skipped["caf\\xe9.png"] = "UTF-8"
    os.mkdir(raw + b"/dir-\xff")
    with open(raw + b"/dir-\xff/inside.png", "wb") as fh:
        draw_image(8, size=24).save(fh, format="PNG")
    c.skipped["dir-\\xff/inside.png"] = "UTF-8"
    # symlink loops: to itself, and two links pointing at each other; a dangling link
    os.symlink("self.png", root / "self.png")
    c.skipped["self.png"] = "loop"
    os.symlink("ping.jpg", root / "pong.jpg")
    os.symlink("pong.jpg", root / "ping.jpg")
    c.skipped["ping.jpg"] = "loop"
    c.skipped["pong.jpg"] = "loop"
    os.symlink("missing-target.png", root / "dangling.png")
    c.skipped["dangling.png"] = "dangling"
    # a folder symlinked into itself (must not recurse forever; symlinked folders are not followed)
    os.symlink(".", root / "again")
    # special files: a FIFO (opening it for reading blocks forever), a socket, devices
    os.mkfifo(root / "fifo.jpg")
    c.skipped["fifo.jpg"] = "FIFO"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(root / "sock.png"))
    c.sockets.append(sock)
    c.skipped["sock.png"] = "socket"
    os.symlink("/dev/zero", root / "zero.jpg")  # reading it never ends
    c.skipped["zero.jpg"] = "device"
    os.symlink("/dev/null", root / "null.png")
    c.skipped["null.png"] = "device"
    c.good.sort()
    return c
