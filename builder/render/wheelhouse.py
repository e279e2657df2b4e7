"""Fetch the lock's wheels into a wheelhouse on this host, each verified against its sha256.

Downloads use the host's network and trust store (proxies and corporate CAs included), so a
build can install from the wheelhouse without reaching any index, and an air-gapped site can
carry the wheelhouse in. A file already present with the right hash is not fetched again; a
download whose hash differs from the lock is discarded and reported, never kept.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from builder import files, tarstream
from builder.errors import FetchError, HashMismatch
from builder.lock.model import Lock, LockedPackage

TIMEOUT = (10.0, 120.0)
ATTEMPTS = 3

Progress = Callable[[str, int, int], None]  # (filename, bytes so far, total bytes or 0)


@dataclass
class FetchReport:
    fetched: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    bytes_fetched: int = 0


def fetch(lock: Lock, project: Path, destination: Path, progress: Progress) -> FetchReport:
    destination.mkdir(parents=True, exist_ok=True)
    report = FetchReport()
    with requests.Session() as session:
        session.headers["User-Agent"] = "reprobuild"
        for package in lock.python.packages:
            target = destination / package.filename
            if _verified(target, package.sha256):
                report.cached.append(package.filename)
                continue
            size = _place(session, package, project, target, progress)
            _stamp(target, package.sha256)
            report.fetched.append(package.filename)
            report.bytes_fetched += size
    return report


# A wheel hashed once is not hashed again while its size, mtime and inode stay as they were (as
# git's index and make judge files): a stamp beside it records them with its sha256. Every wheel
# is hashed again by pip (--require-hashes) whenever a build installs it.
STAMPS = ".verified"


def _stamp_text(path: Path, sha256: str) -> str:
    status = path.stat()
    return f"{sha256} {status.st_size} {status.st_mtime_ns} {status.st_ino}\n"


def _verified(path: Path, sha256: str) -> bool:
    """Whether `path` holds the wheel with `sha256`: by its stamp, else by hashing it."""
    if not path.is_file():
        return False
    stamp = path.parent / STAMPS / path.name
    try:
        if stamp.read_text() == _stamp_text(path, sha256):
            return True
    except OSError:
        pass
    if tarstream.sha256_file(path) != sha256:
        return False
    _stamp(path, sha256)
    return True


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
    progress: Progress,
) -> int:
    """Write one verified wheel to `target` through a temporary file; return its size."""
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".fetch-", delete=False) as handle:
        staging = Path(handle.name)
    try:
        if "://" in package.url:
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
    finally:
        staging.unlink(missing_ok=True)


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
