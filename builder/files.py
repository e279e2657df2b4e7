"""Atomic file writes (a temp file in the same directory, fsync, rename), the cache folder, and
the one message for a write the file system refuses (full, over quota, read-only, not ours).

`write_atomic` raises the OSError as it comes: a cache that cannot be written costs a later
download, never a failed command. A file the user reads (the lock, a record, a manifest, a
wheel in the cache) is written through `write_output` or inside `writing`, whose refusals are a
`WriteError` that names the path, the cause and the fix.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from builder.errors import ReprobuildError, WriteError

# The refusals a user fixes where the file goes: the cause as the message names it, and the fix
# ("{folder}" is the folder the write went to).
REFUSALS = {
    errno.ENOSPC: ("no space left on device (ENOSPC)", "Free space on that filesystem"),
    errno.EDQUOT: ("disk quota exceeded (EDQUOT)", "Free space within your quota there"),
    errno.EROFS: ("read-only file system (EROFS)", "Mount {folder} read-write"),
    errno.EACCES: ("permission denied (EACCES)", "Make {folder} writable for this user"),
    errno.EPERM: ("operation not permitted (EPERM)", "Make {folder} writable for this user"),
}


def cache_root() -> Path:
    """This user's reprobuild cache ($XDG_CACHE_HOME/reprobuild, else ~/.cache/reprobuild)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "reprobuild"


def write_atomic(path: Path, text: str | bytes) -> None:
    """Replace `path` with `text` so readers see the old or the new content, never a mix."""
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        data = text.encode() if isinstance(text, str) else text
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        staged = Path(temporary)
        staged.chmod(path.stat().st_mode & 0o777 if path.exists() else 0o644)
        staged.replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_output(
    path: Path,
    text: str | bytes,
    remedy: str = "",
    error_type: type[ReprobuildError] = WriteError,
) -> None:
    """`write_atomic` for a file the user reads: a failure is an `error_type` naming the path,
    the cause and the fix, with `remedy` (a clause, e.g. "give -o another folder.") as the
    other way out."""
    try:
        write_atomic(path, text)
    except OSError as error:
        raise refused(path, error, remedy, error_type=error_type) from None


@contextmanager
def writing(
    path: Path,
    remedy: str = "",
    *,
    verb: str = "write",
    within: Path | None = None,
    error_type: type[ReprobuildError] = WriteError,
) -> Iterator[None]:
    """Writes to `path` (a file, or the folder written into) inside this block: a refusal (a
    full, read-only or foreign file system) becomes an `error_type` that names `path`, the cause
    and the fix (see `refused`); other errors pass as they came, and so does a refusal that
    names a file outside `within`, when given (one the block reads)."""
    try:
        yield
    except OSError as error:
        if not is_refusal(error) or (within is not None and not _inside(error.filename, within)):
            raise
        raise refused(path, error, remedy, verb=verb, error_type=error_type) from None


def refused(
    path: Path | str,
    error: OSError,
    remedy: str = "",
    *,
    verb: str = "write",
    error_type: type[ReprobuildError] = WriteError,
) -> ReprobuildError:
    """The error a user sees when `path` cannot be written: "cannot write PATH: CAUSE. FIX, or
    REMEDY" for a full, read-only or foreign file system, else the system's reason and
    `remedy`."""
    known = REFUSALS.get(error.errno or 0)
    if known is None:
        fallback = remedy or "check the file system it is on, then run the command again."
        return error_type(f"cannot {verb} {path} ({error.strerror or error}): {fallback}")
    cause, fix = known
    fix = fix.format(folder=_folder_of(Path(path)))
    ending = f", or {remedy}" if remedy else ", then run the command again."
    return error_type(f"cannot {verb} {path}: {cause}. {fix}{ending}")


def is_refusal(error: BaseException) -> bool:
    """Whether an error is a write the file system refused (full, over quota, read-only, not
    ours)."""
    return isinstance(error, OSError) and error.errno in REFUSALS


def _inside(name: str | bytes | int | None, folder: Path) -> bool:
    """Whether an error's file is in `folder` (an error that names none is a write's)."""
    if not isinstance(name, str):
        return True
    return Path(name).resolve().is_relative_to(folder.resolve())


def _folder_of(path: Path) -> Path:
    """The folder whose mode or mount decides a write to `path`: the folder itself when it is
    one, else the nearest folder above it that exists."""
    if path.is_dir():
        return path
    folder = path.parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    return folder
