"""The Python layers, written by reprobuild from the lock's verified wheels: no wheel enters the
engine, no install stage is left behind, and a layer the engine already holds is not made again.

Each layer is the tree `builder/wheelinstall.py` installs (the same code the rendered
Dockerfile's install stage runs), written as a tar in the canonical form normalisation gives
every layer it rewrites: entries in the order the engine's own layer export walks a tree (by
folder, names sorted), numeric owners 0:0, no owner names, the tree's modes and dates. So the
layer reprobuild writes and the layer a plain `docker build` of the Dockerfile gives, once
normalised, are the same bytes, and one diff ID.

A layer's diff ID is kept by its key (the hash of everything that decides its bytes: the
wheels, the venv's path and Python, the epoch, the installer's code), so a re-lock or another
project that needs the same layer finds it by key and loads nothing when the engine holds it.

Each wheel is hashed again before it is installed: the wheel cache trusts a wheel whose size,
mtime and inode did not change since it was verified, and a flipped bit on disk changes none of
them. A wheel found damaged is fetched again (`Wheels.refetch`) before the layer is made.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from builder import files, wheelinstall
from builder.build import imagecache, normalise
from builder.errors import HashMismatch, NormaliseError
from builder.lock.model import LockedPackage
from builder.render import context, plan, wheelhouse

Note = Callable[[str], None]


@dataclass(frozen=True)
class Wheels:
    """The verified wheels the Python layers are made from, and how one found damaged there is
    fetched again."""

    folder: Path
    refetch: Callable[[LockedPackage], None]


def layer_key(build_plan: plan.BuildPlan, layer: plan.PythonLayer) -> str:
    """The hash of every input of the layer's bytes."""
    inputs = {
        "form": normalise_form(),
        "installer": importlib.metadata.version("installer"),
        "wheelinstall": _installer_digest(),
        "venv": plan.VENV,
        "python": build_plan.python_version,
        "epoch": plan.LAYER_EPOCH,
        "wheels": [[p.filename, p.sha256] for p in layer.packages],
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


@functools.cache
def _installer_digest() -> str:
    """The install code's hash: the script the install stage runs is this file."""
    return hashlib.sha256(context.INSTALLER_SOURCE.read_bytes()).hexdigest()


def normalise_form() -> str:
    """The canonical tar form: PAX headers as this Python's tar writer writes them."""
    return f"pax/python{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True)
class KnownLayer:
    diff_id: str
    size: int  # bytes of its files, as the engine counts a layer's size


def known(key: str, note: Note) -> KnownLayer | None:
    """The layer made before for this key, if this cache recorded it intact."""
    text = imagecache.read_sealed(_root() / key, "layer", key, note, "making the layer again")
    diff_id, _, size = (text or "").partition(" ")
    return KnownLayer(diff_id, int(size)) if diff_id and size.isdigit() else None


def keep(key: str, layer: KnownLayer) -> None:
    """A cache that cannot be written costs a later install, never a wrong layer."""
    imagecache.write_sealed(_root() / key, "layer", key, f"{layer.diff_id} {layer.size}")


def _root() -> Path:
    return files.cache_root() / "layers"


@dataclass(frozen=True)
class Entry:
    info: tarfile.TarInfo
    path: Path | None  # the file to copy the data from, for a regular file


def tree_entries(root: Path) -> list[Entry]:
    """Every file, folder and link under `root` (which stands for /), in the order the engine's
    overlay export walks a tree: each folder before its contents, names sorted byte-wise."""
    entries: list[Entry] = []

    def walk(folder: Path, prefix: str) -> None:
        for child in sorted(os.scandir(folder), key=lambda item: item.name):
            name = f"{prefix}{child.name}"
            status = child.stat(follow_symlinks=False)
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = status.st_mode & 0o7777, int(status.st_mtime)
            info.uid = info.gid = 0  # as the install stage's `COPY --chown=0:0` gives them
            normalise.canonical(info, plan.LAYER_EPOCH)
            if child.is_symlink():
                info.type, info.linkname = tarfile.SYMTYPE, str(Path(child.path).readlink())
                entries.append(Entry(info, None))
            elif child.is_dir(follow_symlinks=False):
                info.type = tarfile.DIRTYPE
                entries.append(Entry(info, None))
                walk(Path(child.path), f"{name}/")
            else:
                info.type, info.size = tarfile.REGTYPE, status.st_size
                entries.append(Entry(info, Path(child.path)))

    walk(root, "")
    return entries


def archive_size(entries: list[Entry]) -> int:
    """The exact bytes `write` gives for `entries`: each header and its padded data, the two
    end blocks, padding to the record size (as Python's tar writer closes a stream)."""
    size = 0
    for entry in entries:
        size += len(entry.info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape"))
        size += -(-entry.info.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    size += 2 * tarfile.BLOCKSIZE
    return -(-size // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


class _Sink:
    """Where the tar writer puts its bytes: handed on in chunks, and hashed."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def take(self) -> Iterator[bytes]:
        chunks, self.chunks = self.chunks, []
        yield from chunks


def write(entries: list[Entry], sink: _Sink) -> Iterator[bytes]:
    """The layer's tar, in chunks, as it is written into `sink` (which hashes it)."""
    with normalise.canonical_writer(sink) as archive:  # type: ignore[arg-type]
        for entry in entries:
            if entry.path is None:
                archive.addfile(entry.info)
            else:
                with entry.path.open("rb") as data:
                    archive.addfile(entry.info, data)
            yield from sink.take()
    yield from sink.take()


@dataclass
class MadeLayer:
    """A layer being made: its tree on disk, its size as a tar; `diff_id` once streamed."""

    key: str
    tree: Path
    entries: list[Entry]
    tar_size: int
    files_size: int
    diff_id: str = ""

    def stream(self) -> Iterator[bytes]:
        sink = _Sink()
        yield from write(self.entries, sink)
        if sink.size != self.tar_size:
            raise NormaliseError(
                f"the Python layer {self.key[:12]} came to {sink.size} bytes where {self.tar_size} "
                "were announced: its tree changed while it was written. Run `reprobuild build` "
                "again."
            )
        self.diff_id = f"sha256:{sink.digest.hexdigest()}"


def make(
    build_plan: plan.BuildPlan, layer: plan.PythonLayer, wheels: Wheels, workdir: Path
) -> MadeLayer:
    """Install the layer's wheels (verified in the wheelhouse, hashed again here, one found
    damaged fetched again) into a tree under `workdir`."""
    for package in layer.packages:
        path = wheels.folder / package.filename
        if not wheelhouse.matches(path, package.sha256):
            wheels.refetch(package)
            if not wheelhouse.matches(path, package.sha256):
                raise HashMismatch(
                    f"{package.filename} in {wheels.folder} still does not match the lock's sha256 "
                    f"({package.sha256}) once fetched again: the disk under it corrupts what "
                    "is written there. Check it (`dmesg`, SMART), or set XDG_CACHE_HOME to "
                    "another disk."
                )
    tree = Path(tempfile.mkdtemp(prefix=f"{layer.stage}.", dir=workdir))
    wheelinstall.install_layer(
        [wheels.folder / package.filename for package in layer.packages],
        tree,
        venv=plan.VENV,
        python=build_plan.python_version,
        epoch=plan.LAYER_EPOCH,
    )
    entries = tree_entries(tree)
    files_size = sum(entry.info.size for entry in entries)
    return MadeLayer(layer_key(build_plan, layer), tree, entries, archive_size(entries), files_size)


def discard(made: MadeLayer) -> None:
    shutil.rmtree(made.tree, ignore_errors=True)
