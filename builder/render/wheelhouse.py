"""Fetch the lock's wheels into a wheelhouse on this host, each verified against its sha256.

Downloads use the host's network and trust store (proxies and corporate CAs included), so a
build can install from the wheelhouse without reaching any index, and an air-gapped site can
carry the wheelhouse in. A file already present with the right hash is not fetched again; a
download whose hash differs from the lock is discarded and reported, never kept. A download is
written to a staging file held by its process (builder/scratch.py): one that a killed fetch left
is removed by the next fetch into the same folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from builder import codeset, files, scratch, tarstream
from builder.errors import FetchError, HashMismatch
from builder.lock.model import Lock, LockedPackage

TIMEOUT = (10.0, 120.0)
ATTEMPTS = 3

Progress = Callable[[str, int, int], None]  # (filename, bytes so far, total bytes or 0)
Note = Callable[[str], None]
STAGING = ".fetch-"


@dataclass
class FetchReport:
    fetched: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    bytes_fetched: int = 0


def _silent(_: str) -> None:
    pass


def fetch(
    lock: Lock, project: Path, destination: Path, progress: Progress, *, note: Note = _silent
) -> FetchReport:
    """Every wheel of the lock in `destination`, verified; `note` hears of each download and of
    each file found damaged."""
    remedy = (
        "set XDG_CACHE_HOME to a folder on a filesystem with room (the wheel cache is under it)."
        if destination == default_cache()
        else "give the wheelhouse a folder on a filesystem with room."
    )
    with files.writing(destination, remedy, verb="create"):
        destination.mkdir(parents=True, exist_ok=True)
    scratch.sweep(destination, STAGING)
    report = FetchReport()
    with requests.Session() as session:
        session.headers["User-Agent"] = "reprobuild"
        for package in lock.python.packages:
            target = destination / package.filename
            if _verified(target, package.sha256, note):
                report.cached.append(package.filename)
                continue
            with files.writing(target, remedy, within=destination):
                size = _place(session, package, project, target, progress=progress, note=note)
            _stamp(target, package.sha256)
            report.fetched.append(package.filename)
            report.bytes_fetched += size
    return report


# A wheel hashed once is not hashed again while its size, mtime and inode stay as they were (as
# git's index and make judge files): a stamp beside it records them with its sha256. A change
# that keeps all three (a flipped bit on disk) is caught where the bytes are used: every wheel is
# hashed again whenever a build installs it (build/pylayer.py, and the install stage's
# wheelinstall.py).
STAMPS = ".verified"


def _stamp_text(path: Path, sha256: str) -> str:
    status = path.stat()
    return f"{sha256} {status.st_size} {status.st_mtime_ns} {status.st_ino}\n"


def _verified(path: Path, sha256: str, note: Note) -> bool:
    """Whether `path` holds the wheel with `sha256`: by its stamp, else by hashing it (a file
    that hashes otherwise is damaged, or another: `note` hears of it)."""
    if not path.is_file():
        return False
    stamp = path.parent / STAMPS / path.name
    try:
        if stamp.read_text() == _stamp_text(path, sha256):
            return True
    except OSError:
        pass
    if tarstream.sha256_file(path) != sha256:
        note(damaged(path))
        return False
    _stamp(path, sha256)
    return True


def damaged(path: Path) -> str:
    return (
        f"wheels: {path.name} in {path.parent} does not match the lock's sha256 (damaged, or "
        "changed since it was fetched); fetching it again"
    )


def fetch_again(
    lock: Lock,
    package: LockedPackage,
    project: Path,
    destination: Path,
    *,
    progress: Progress,
    note: Note = _silent,
) -> None:
    """Fetch again a wheel of `destination` found damaged where it was used (a change its stamp
    could not see)."""
    note(damaged(destination / package.filename))
    (destination / STAMPS / package.filename).unlink(missing_ok=True)
    (destination / package.filename).unlink(missing_ok=True)
    fetch(lock, project, destination, progress, note=note)


def matches(path: Path, sha256: str) -> bool:
    """Whether `path` hashes to `sha256`, read in full (no stamp trusted)."""
    try:
        return tarstream.sha256_file(path) == sha256
    except FileNotFoundError:
        return False


def _stamp(path: Path, sha256: str) -> None:
    stamp = path.parent / STAMPS / path.name
    try:
        stamp.parent.mkdir(exist_ok=True)
        files.write_atomic(stamp, _stamp_text(path, sha256))
    except OSError:
        pass  # no stamp: the wheel is hashed again next time


def _place(
    session: requests.Session,
    package: LockedPackage,
    project: Path,
    target: Path,
    *,
    progress: Progress,
    note: Note,
) -> int:
    """Write one verified wheel to `target` through a staging file; return its size."""
    with scratch.file(target.parent, STAGING) as staging:
        if package.remote:
            size = f" ({codeset.size_text(package.size)})" if package.size else ""
            note(f"wheels: downloading {package.filename}{size}")
            written = _download(session, package, staging, progress)
        else:
            with (project / package.url).open("rb") as source, staging.open("wb") as handle:
                written = tarstream.copy_hashed(source, handle)
        found = written.digest.hexdigest()
        if found != package.sha256:
            raise HashMismatch(
                f"{package.name} {package.version}: {package.url} has sha256 {found}, but the lock "
                f"pins {package.sha256}. The file changed since it was locked, or something "
                "between this host and the index altered it; nothing was kept. Re-lock only if you "
                "trust the new file."
            )
        staging.replace(target)
        return written.size


def _download(
    session: requests.Session, package: LockedPackage, staging: Path, progress: Progress
) -> tarstream.HashingWriter:
    """Download to `staging`, hashed as it is written; each attempt starts the file afresh."""
    problem = ""
    for _ in range(ATTEMPTS):
        try:
            with session.get(package.url, stream=True, timeout=TIMEOUT) as response:
                if response.status_code != 200:
                    problem = f"HTTP {response.status_code}"
                    if response.status_code == 404:
                        break
                    continue
                total = int(response.headers.get("Content-Length") or 0)
                with staging.open("wb") as handle:
                    written = tarstream.HashingWriter(handle)
                    for block in response.iter_content(tarstream.BLOCK):
                        written.write(block)
                        progress(package.filename, written.size, total)
                return written
        except requests.RequestException as error:
            problem = type(error).__name__
    raise FetchError(
        f"{package.name} {package.version} could not be downloaded from {package.url} "
        f"({problem}). Check the network or proxy settings of this host."
    )


def default_cache() -> Path:
    """Shared by every project of this user: a wheel is downloaded once, verified every time."""
    return files.cache_root() / "wheels"
