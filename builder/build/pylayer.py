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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from builder import files, wheelinstall
from builder.build import normalise
from builder.errors import NormaliseError
from builder.render import context, plan


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


def known(key: str) -> KnownLayer | None:
    """The layer made before for this key, if this cache recorded it intact."""
    try:
        document = json.loads((_root() / f"{key}.json").read_text())
        return KnownLayer(str(document["diff_id"]), int(document["size"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def keep(key: str, layer: KnownLayer) -> None:
    try:
        _root().mkdir(parents=True, exist_ok=True)
        text = json.dumps({"diff_id": layer.diff_id, "size": layer.size})
        files.write_atomic(_root() / f"{key}.json", text)
    except OSError:
        pass  # a cache that cannot be written costs a later install, never a wrong layer


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
    build_plan: plan.BuildPlan,
    layer: plan.PythonLayer,
    wheelhouse: Path,
    workdir: Path,
) -> MadeLayer:
    """Install the layer's wheels (verified in `wheelhouse`) into a tree under `workdir`."""
    tree = Path(tempfile.mkdtemp(prefix=f"{layer.stage}.", dir=workdir))
    wheelinstall.install_layer(
        [wheelhouse / package.filename for package in layer.packages],
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
