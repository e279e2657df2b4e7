"""Tar archives as streams: written while they are sent, read while they arrive, hashed as the
bytes go past. Shared by the build context, the normaliser, image diffs and bootstrapped bases.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO

BLOCK = 1 << 20
END = tarfile.NUL * (2 * tarfile.BLOCKSIZE)


def blocks(handle: IO[bytes]) -> Iterator[bytes]:
    while block := handle.read(BLOCK):
        yield block


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return sha256_stream(handle)


def sha256_stream(handle: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for block in blocks(handle):
        digest.update(block)
    return digest.hexdigest()


def member(info: tarfile.TarInfo, data: IO[bytes] | None = None) -> Iterator[bytes]:
    """One archive member: its PAX header, then its data in blocks, padded to the tar block."""
    yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    if data is None or not info.size:
        return
    yield from blocks(data)
    if info.size % tarfile.BLOCKSIZE:
        yield tarfile.NUL * (tarfile.BLOCKSIZE - info.size % tarfile.BLOCKSIZE)


def file_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


class HashingReader:
    """A read-only stream that hashes and counts what passes through it (and tells `progress`
    the count, when given)."""

    def __init__(self, source: IO[bytes], progress: Callable[[int], object] | None = None) -> None:
        self.source = source
        self.digest = hashlib.sha256()
        self.size = 0
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.digest.update(data)
        self.size += len(data)
        if self.progress is not None:
            self.progress(self.size)
        return data

    def drain(self) -> None:
        while self.read(BLOCK):
            pass


class HashingWriter:
    """A write-only stream that hashes and counts what passes into `target`."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.target.write(data)


def copy_hashed(source: IO[bytes], target: IO[bytes]) -> HashingWriter:
    """Copy `source` into `target`, hashing and counting as it goes."""
    writer = HashingWriter(target)
    shutil.copyfileobj(source, writer, BLOCK)
    return writer


Visit = Callable[[tarfile.TarInfo, tarfile.TarFile], None]


def read_layer(layer: IO[bytes], visit: Visit) -> tuple[str, int]:
    """Stream a layer tar once, calling `visit` on each entry; return its diff ID and size.

    The end-of-archive padding is read too: it belongs to the bytes the diff ID covers.
    """
    hashing = HashingReader(layer)
    with tarfile.open(fileobj=hashing, mode="r|", bufsize=BLOCK) as entries:  # type: ignore[call-overload]
        for entry in entries:
            visit(entry, entries)
    hashing.drain()
    return f"sha256:{hashing.digest.hexdigest()}", hashing.size


def data(archive: tarfile.TarFile, entry: tarfile.TarInfo) -> IO[bytes]:
    """The contents of a regular-file entry (callers check `entry.isreg()` first)."""
    handle = archive.extractfile(entry)
    if handle is None:
        raise ValueError(f"{entry.name} is not a regular file")
    return handle


def folder_stream(
    folder: Path, leave_out: frozenset[str] = frozenset(), replace: Mapping[str, bytes] = {}
) -> Iterator[bytes]:
    """The context as a tar, produced while it is sent: entries in sorted order, owner root,
    times as written (the epoch). Large wheels are streamed, never held in memory. Folders named
    in `leave_out` (relative paths) are not sent; a file named in `replace` is sent with the
    bytes given instead of its own."""
    for path in _entries(folder, leave_out):
        name = path.relative_to(folder).as_posix()
        info = _tar_info(path, name)
        if name in replace:
            info.size = len(replace[name])
            yield from member(info, io.BytesIO(replace[name]))
        elif info.isreg():
            with path.open("rb") as handle:
                yield from member(info, handle)
        else:
            yield from member(info)
    yield END


def _entries(folder: Path, leave_out: frozenset[str]) -> Iterator[Path]:
    for root, folders, names in os.walk(folder):
        here = Path(root)
        relative = here.relative_to(folder)
        folders[:] = sorted(f for f in folders if (relative / f).as_posix() not in leave_out)
        if here != folder:
            yield here
        yield from (here / name for name in sorted(names))


def _tar_info(path: Path, name: str) -> tarfile.TarInfo:
    status = path.lstat()
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(status.st_mode)
    info.mtime = int(status.st_mtime)
    if stat.S_ISDIR(status.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(status.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, str(path.readlink())
    else:
        info.size = status.st_size
    return info
