"""One `reprobuild build` of a project at a time: an exclusive lock (flock) on the lock file in
the project's work folder, held from the start of the build to its record.

Two builds of one project write one context folder, one record and, when they lock first, one
lock file: side by side, one would build from a context the other is replacing. The second build
waits, and says for whom. The kernel drops the lock when the process that holds it ends, however
it ends, so a killed build leaves no stale lock. The file holds the pid of the build that holds
it, for the message of the one that waits, and is emptied when the lock is let go.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from builder import layout
from builder.errors import WriteError

LOCK_FILE = Path(layout.WORK_FOLDER) / "build.lock"
# A holder writes its pid just after it takes the lock: a waiter that reads the file in between
# finds it empty (or naming a build that was killed) and reads it again.
_PID_READS, _PID_PAUSE_S = 20, 0.05


@contextlib.contextmanager
def hold(project: Path, note: Callable[[str], None]) -> Iterator[None]:
    """Hold the project's build lock for the block, waiting (and saying so) while another build
    holds it. A project folder that does not exist is left to the spec's own error."""
    if not project.is_dir():
        yield
        return
    path = project / LOCK_FILE
    try:
        path.parent.mkdir(exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise WriteError(
            f"cannot create the build lock {path} ({error.strerror or error}): make the project "
            "folder writable for this user (the build writes its context and record there too)."
        ) from None
    held = False
    try:
        held = _take(descriptor, path, note)
        if held:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        if held:
            with contextlib.suppress(OSError):
                os.ftruncate(descriptor, 0)
        os.close(descriptor)


def _take(descriptor: int, path: Path, note: Callable[[str], None]) -> bool:
    """Take the lock, waiting while another build holds it; False where the file system cannot
    lock (the build then runs unguarded, and says so)."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    except OSError as error:
        note(
            f"cannot lock {path} ({error.strerror or error}): this build is not kept from "
            "running beside another build of this project"
        )
        return False
    note(
        f"waiting for another build of this project ({_holder(descriptor)}) to finish: it holds "
        f"the build lock {path}"
    )
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    return True


def _holder(descriptor: int) -> str:
    for _ in range(_PID_READS):
        text = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
        if text.isdigit() and _alive(int(text)):
            return f"pid {text}"
        time.sleep(_PID_PAUSE_S)
    return "pid unknown"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
