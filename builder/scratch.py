"""Scratch files and folders that a killed process leaves behind, found and removed by the next.

Each is held, from the moment it exists until it is gone, by an exclusive lock (flock) of the
process that made it. The kernel drops that lock when the process ends, however it ends (Ctrl-C,
SIGKILL, out of memory), so an entry that no process holds is a leftover, and `sweep` removes
it. Entries are made under a shared lock on the folder itself and swept under an exclusive one:
a sweep never sees an entry before its maker holds it. Where the file system cannot lock, nothing
is swept there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def _guard(parent: Path, kind: int) -> Iterator[None]:
    """`parent` locked as `kind` for the block (for a maker, as well as the file system can)."""
    descriptor = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(descriptor, kind)
        except OSError:
            if kind != fcntl.LOCK_SH:
                raise
        yield
    finally:
        os.close(descriptor)


def _hold(descriptor: int) -> None:
    with contextlib.suppress(OSError):  # unheld, it is also unsweepable (see _unheld)
        fcntl.flock(descriptor, fcntl.LOCK_EX)


@contextlib.contextmanager
def folder(parent: Path, prefix: str) -> Iterator[Path]:
    """A new folder in `parent`, held until the block ends, then removed with what it holds."""
    parent.mkdir(parents=True, exist_ok=True)
    with _guard(parent, fcntl.LOCK_SH):
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        try:
            holder = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            _hold(holder)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(holder)


@contextlib.contextmanager
def file(parent: Path, prefix: str) -> Iterator[Path]:
    """A new empty file in `parent`, held until the block ends, then removed unless it was
    renamed into place meanwhile."""
    with _guard(parent, fcntl.LOCK_SH):
        holder, name = tempfile.mkstemp(prefix=prefix, dir=parent)
        _hold(holder)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)
        os.close(holder)


def sweep(parent: Path, prefix: str = "") -> list[str]:
    """Remove what no process holds among the entries of `parent` named `prefix*`: what killed
    processes left there. Their names; none when `parent` cannot be swept (a cache on a
    read-only file system costs its leftovers' space, never a failed command)."""
    removed: list[str] = []
    with contextlib.suppress(OSError), _guard(parent, fcntl.LOCK_EX):
        for entry in sorted(parent.iterdir()):
            if entry.name.startswith(prefix) and _unheld(entry):
                removed.append(entry.name)
    return removed


def _unheld(entry: Path) -> bool:
    """Remove `entry` if no process holds it; whether it was removed."""
    try:
        descriptor = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        return False
    try:
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    finally:
        os.close(descriptor)
    return True
