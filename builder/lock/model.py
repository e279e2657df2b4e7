"""The lock's records: every input of the image, pinned, for each image platform.

- the Python closure for the platform, one wheel per package with its sha256 (lock.python);
- the base image: a registry base by its manifest digest for the platform, or a Debian base
  bootstrapped from the archive at a snapshot time for the platform's architecture, with its
  exact package set (lock.baseimage);
- the system packages: the requested ones and their closure at exact versions, as apt resolves
  them against the archive snapshot for the architecture (lock.baseimage, lock.apt).

A lock holds the spec's first platform at its top level (so the lock of a linux/amd64 image
reads as it always did) and each further platform in `other_platforms`. `Lock.on(platform)` is
the lock of one platform's image, which rendering and building take.

`reprobuild.lock` (lock.lockfile) is these records as TOML; `lock.stage` makes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TypedDict
from urllib.parse import unquote, urlsplit

from builder.knowledge import AMD64

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
class PlatformLock:
    """What differs between the images of one spec: each platform's build, base, system
    packages and wheels."""

    resolution: ResolutionRecord
    base: BaseLock
    system: SystemLock
    python: PythonClosure

    @property
    def platform(self) -> str:
        return self.resolution.get("platform") or AMD64


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
    other_platforms: tuple[PlatformLock, ...] = ()

    @property
    def platform(self) -> str:
        """The image platform of the top-level records (the spec's first)."""
        return self.resolution.get("platform") or AMD64

    @property
    def platforms(self) -> tuple[str, ...]:
        """Every image platform the lock pins, in the spec's order."""
        return (self.platform, *(other.platform for other in self.other_platforms))

    def on(self, platform: str) -> Lock:
        """The lock of the image for `platform`: its records at the top level, no others.
        KeyError names the platform when the lock has none for it (callers check `platforms`)."""
        if platform == self.platform:
            return replace(self, other_platforms=())
        for other in self.other_platforms:
            if other.platform == platform:
                return replace(
                    self,
                    resolution=other.resolution,
                    base=other.base,
                    system=other.system,
                    python=other.python,
                    other_platforms=(),
                )
        raise KeyError(platform)

    def on_or_first(self, platform: str) -> Lock:
        """`on(platform)` where the lock pins it, else its first platform's: the lock of a
        record's image, whose platform the lock checked before (a record of another lock is
        refused by its digest elsewhere)."""
        return self.on(platform if platform in self.platforms else self.platform)

    def each_platform(self) -> tuple[Lock, ...]:
        """`on(platform)` for every platform, in order."""
        return tuple(self.on(platform) for platform in self.platforms)

    def with_every_wheel(self) -> Lock:
        """The lock whose closure holds the wheels of every platform, each once: what a
        wheelhouse for all of its images holds."""
        wheels = {p.filename: p for lock in self.each_platform() for p in lock.python.packages}
        packages = tuple(sorted(wheels.values(), key=lambda p: (p.name, p.filename)))
        return replace(self, python=replace(self.python, packages=packages))


def now_snapshot() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
