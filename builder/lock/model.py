"""The lock's records: every input of the image, pinned.

- the Python closure for the container's platform, one wheel per package with its sha256
  (lock.python);
- the base image: a registry base by its linux/amd64 manifest digest, or a Debian base
  bootstrapped from the archive at a snapshot time with its exact package set (lock.baseimage);
- the system packages: the requested ones and their closure at exact versions, as apt resolves
  them against the archive snapshot (lock.baseimage, lock.apt).

`reprobuild.lock` (lock.lockfile) is these records as TOML; `lock.stage` makes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TypedDict
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from builder.resolve.resolve import ResolutionRecord


class LockedDeterminism(TypedDict):
    """The spec's determinism policy, as the lock keeps it and the image's ENV applies it."""

    seed: int
    tf32: bool
    cublas_workspace_config: str


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    url: str  # https://... or a path relative to the project for local wheels
    sha256: str
    size: int | None = None
    marker: str | None = None

    @property
    def filename(self) -> str:
        return unquote(urlsplit(self.url).path.rsplit("/", 1)[-1])

    @property
    def remote(self) -> bool:
        """Downloaded from its URL; otherwise a wheel file under the project."""
        return "://" in self.url


@dataclass(frozen=True)
class PythonClosure:
    platform: str
    python: str
    indexes: tuple[str, ...]
    find_links: tuple[str, ...]
    requirements: tuple[str, ...]  # what the closure was resolved from
    packages: tuple[LockedPackage, ...]
    uv_version: str

    @property
    def machine(self) -> str:
        """The platform's machine: x86_64 of x86_64-manylinux_2_28."""
        return self.platform.split("-", 1)[0]

    def package(self, name: str) -> LockedPackage | None:
        return next((p for p in self.packages if p.name == name), None)


@dataclass(frozen=True)
class BaseLock:
    kind: str  # "registry" or "bootstrap"
    reference: str  # as the spec (or the default) names it
    python: str  # full version, e.g. 3.11.14
    suite: str  # Debian suite, e.g. bookworm
    image: str = ""  # registry: name@sha256 for FROM
    digest: str = ""
    index_digest: str | None = None
    config_digest: str = ""
    digest_source: str = ""  # registry, given, knowledge base (registry unreachable)
    python_source: str = ""  # image, apt (installed from the distribution), knowledge base
    snapshot: str = ""  # bootstrap: archive time
    mirror: str = ""
    packages: tuple[str, ...] = ()  # bootstrap: name=version, the whole root filesystem


@dataclass(frozen=True)
class SystemLock:
    snapshot: str
    mirror: str
    security_mirror: str | None
    requested: tuple[str, ...]
    packages: tuple[str, ...]  # name=version, requested plus closure, sorted


@dataclass(frozen=True)
class Lock:
    spec_hash: str
    knowledge_version: str
    reprobuild_version: str
    resolution: ResolutionRecord
    determinism: LockedDeterminism
    base: BaseLock
    system: SystemLock
    python: PythonClosure
    notes: tuple[str, ...] = field(default_factory=tuple)


def now_snapshot() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
