"""Install a lock's wheels into one tree per Python layer, the same way on the host and in a build.

`reprobuild build` runs this on the host and writes each tree as a layer itself (build/pylayer.py);
the rendered Dockerfile and Apptainer definition copy this file and the installer package into
the context and run it in a throwaway stage. One installer, one tree, so both give one layer.

pypa/installer does the install: each file where the venv's install scheme puts it, console
scripts with the venv's interpreter, RECORD, INSTALLER. No resolution, no network, no bytecode
(none is compiled, and what a wheel ships is dropped): the wheels are the lock's, verified
before. Modes and dates are then set from the files' kinds alone (0755 for folders and
executables, 0644 for the rest, every date the layer's epoch), so the tree does not depend on
the umask or the clock of the machine that made it.

Runs as a script with only the standard library and `installer` (which the context carries next
to it): `python wheelinstall.py PLAN.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.records import RecordEntry
from installer.sources import WheelFile
from installer.utils import Scheme

INSTALLER = b"reprobuild\n"


class _Destination(SchemeDictionaryDestination):
    """The venv's scheme under a staging root. A file a wheel earlier in the layer wrote is
    replaced, as pip does (namespace packages such as nvidia/ ship the same __init__.py in
    several wheels)."""

    def write_to_fs(
        self, scheme: Scheme, path: str, stream: Any, is_executable: bool
    ) -> RecordEntry:
        Path(self._path_with_destdir(scheme, path)).unlink(missing_ok=True)
        return super().write_to_fs(scheme, path, stream, is_executable)


def scheme(venv: str, python: str) -> dict[str, str]:
    """The install scheme of a venv at `venv` for Python `python` (e.g. 3.11), as sysconfig's
    posix_prefix gives it."""
    site = f"{venv}/lib/python{python}/site-packages"
    return {
        "purelib": site,
        "platlib": site,
        "headers": f"{venv}/include/site/python{python}",
        "scripts": f"{venv}/bin",
        "data": venv,
    }


def install_layer(
    wheels: Iterable[Path], root: Path, *, venv: str, python: str, epoch: int
) -> None:
    """Install `wheels`, in order, into a tree rooted at `root` (which stands for /)."""
    destination = _Destination(
        scheme(venv, python),
        interpreter=f"{venv}/bin/python",
        script_kind="posix",
        destdir=str(root),
    )
    for wheel in wheels:
        with WheelFile.open(wheel) as source:
            install(source, destination, {"INSTALLER": INSTALLER})
    drop_bytecode(root)
    settle(root, epoch)


def drop_bytecode(root: Path) -> None:
    """Bytecode some wheels ship (numpy's distutils/__pycache__): a cache Python rebuilds in
    memory, and build-time noise to normalisation (its NOISE: `*.pyc`, every `__pycache__`
    folder and what it holds), so never part of a layer."""
    for folder, names, files in os.walk(root):
        here = Path(folder)
        for name in [name for name in names if name == "__pycache__"]:
            shutil.rmtree(here / name)
            names.remove(name)
        for name in files:
            if name.endswith(".pyc"):
                (here / name).unlink()


def settle(root: Path, epoch: int) -> None:
    """Modes from the files' kinds, every date `epoch`, folders last (writing into a folder
    redates it)."""
    for folder, names, files in os.walk(root, topdown=False):
        here = Path(folder)
        for name in files:
            path = here / name
            path.chmod(0o755 if path.stat().st_mode & 0o111 else 0o644)
            os.utime(path, (epoch, epoch))
        for name in names:
            (here / name).chmod(0o755)
            os.utime(here / name, (epoch, epoch))
    root.chmod(0o755)
    os.utime(root, (epoch, epoch))


def verified(wheel: Path, sha256: str) -> Path:
    """`wheel`, once its bytes match the lock's sha256."""
    digest = hashlib.sha256()
    with wheel.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise SystemExit(
            f"{wheel.name} does not match the lock's sha256 ({sha256}): fetch the wheels again "
            "with `reprobuild fetch`."
        )
    return wheel


def main(arguments: list[str]) -> int:
    """PLAN.json: {"venv", "python", "epoch", "wheels" (a folder), "output" (a folder),
    "layers": [{"name", "wheels": [{"file", "sha256"}, in order]}]}; each layer's tree goes to
    output/name."""
    plan = json.loads(Path(arguments[0]).read_text())
    wheels, output = Path(plan["wheels"]), Path(plan["output"])
    for layer in plan["layers"]:
        install_layer(
            [verified(wheels / wheel["file"], wheel["sha256"]) for wheel in layer["wheels"]],
            output / layer["name"],
            venv=plan["venv"],
            python=plan["python"],
            epoch=plan["epoch"],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
