"""Atomic file writes (a temp file in the same directory, fsync, rename) and the cache folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from builder.errors import ReprobuildError, WriteError


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
    path: Path, text: str, remedy: str, error_type: type[ReprobuildError] = WriteError
) -> None:
    """`write_atomic` for a file the user named: a failure is an `error_type` that says
    `remedy`."""
    try:
        write_atomic(path, text)
    except OSError as error:
        raise error_type(f"cannot write {path} ({error.strerror or error}): {remedy}") from None
