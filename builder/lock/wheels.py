"""Why uv found no wheel for a requirement, from the package's files on the index.

uv locks with builds from source off, so a release without a wheel for the image's Python and
platform cannot be installed; uv then reports that "no solution" was found. This module reads
the package's file list from the simple API that the lock resolves against (PEP 691 JSON, or
the PEP 503 page) and says which wheels the asked release has, and which releases nearest to it
have one for this Python and platform.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from packaging import tags
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from builder.knowledge.refresh import Anchors

GLIBC = (2, 28)  # the newest manylinux the image's base provides
ARCH = "x86_64"  # the machine of linux/amd64 images; linux/arm64's is aarch64
ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
_HINT = re.compile(r"Wheels are required for `([^`]+)` because building from source is disabled")
_CAUSE = re.compile(r"Because ([A-Za-z0-9][A-Za-z0-9._-]*)((?:[=<>!~]=?[^\s,]+,?)+) has no usable")
_LEGACY = {"manylinux2014": (2, 17), "manylinux2010": (2, 12), "manylinux1": (2, 5)}


class Index(Protocol):
    def get(self, url: str, headers: dict[str, str] | None = None) -> bytes: ...


@dataclass(frozen=True)
class Query:
    """What a failed lock asked for: the image's Python, the requirement lines (`-r FILE`
    included) and the client that reads the index."""

    python: str  # "3.11"
    requirements: tuple[str, ...]
    index: Index
    machine: str = ARCH  # the image's: x86_64 or aarch64


@dataclass(frozen=True)
class IndexFile:
    filename: str
    requires_python: str | None = None
    yanked: bool = False


@dataclass(frozen=True)
class Release:
    """One version of a package as the index lists it."""

    version: Version
    wheels: tuple[frozenset[tags.Tag], ...]
    requires_python: tuple[str | None, ...]  # per wheel
    yanked: bool


def unbuildable(stderr: str) -> list[str]:
    """The packages uv could not use for want of a wheel, in the order it names them."""
    names = _HINT.findall(stderr) or [match[0] for match in _CAUSE.findall(stderr)]
    return list(dict.fromkeys(names))


def requested(name: str, lines: Iterable[str], stderr: str) -> tuple[str, SpecifierSet] | None:
    """What was asked of `name`: the requirement as written (a line, or one in a `-r` file), or
    else the range uv names (a dependency's pin); None when neither says."""
    wanted = canonicalize_name(name)
    for line in _requirement_lines(lines):
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(requirement.name) == wanted:
            return line.strip(), requirement.specifier
    for found, specifier in _CAUSE.findall(stderr):
        if canonicalize_name(found) == wanted:
            try:
                return f"{found}{specifier.rstrip(',')}", SpecifierSet(specifier.rstrip(","))
            except InvalidSpecifier:
                return None
    return None


def _requirement_lines(lines: Iterable[str]) -> Iterable[str]:
    for line in lines:
        if line.startswith("-r "):
            try:
                text = Path(line[3:].strip()).read_text()
            except OSError:
                continue
            yield from (
                kept.split(" #")[0].strip()
                for kept in text.splitlines()
                if kept.strip() and not kept.lstrip().startswith(("#", "-"))
            )
        else:
            yield line


def listing(index: Index, index_url: str, name: str) -> list[IndexFile]:
    """The files the index lists for a package (PEP 691 JSON where served, else PEP 503)."""
    url = f"{index_url.rstrip('/')}/{canonicalize_name(name)}/"
    body = index.get(url, {"Accept": ACCEPT})
    if body.lstrip().startswith(b"{"):
        document = json.loads(body)
        return [
            IndexFile(
                str(entry["filename"]),
                entry.get("requires-python"),
                bool(entry.get("yanked", False)),
            )
            for entry in document.get("files", [])
        ]
    parser = Anchors()
    parser.feed(body.decode("utf-8", errors="replace"))
    return [
        IndexFile(
            unquote(urlsplit(urldefrag(urljoin(url, href)).url).path.rsplit("/", 1)[-1]),
            attributes.get("data-requires-python"),
            "data-yanked" in attributes,
        )
        for href, attributes in parser.links
    ]


def releases(files: Iterable[IndexFile]) -> dict[Version, Release]:
    """The files by version; names that are neither a wheel nor an sdist are skipped."""
    found: dict[Version, list[IndexFile]] = {}
    wheels: dict[Version, list[tuple[frozenset[tags.Tag], str | None]]] = {}
    for file in files:
        try:
            if file.filename.endswith(".whl"):
                _, version, _, wheel_tags = parse_wheel_filename(file.filename)
                wheels.setdefault(version, []).append((wheel_tags, file.requires_python))
            else:
                _, version = parse_sdist_filename(file.filename)
        except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
            continue
        found.setdefault(version, []).append(file)
    return {
        version: Release(
            version,
            tuple(tags_ for tags_, _ in wheels.get(version, [])),
            tuple(python for _, python in wheels.get(version, [])),
            all(file.yanked for file in listed),
        )
        for version, listed in found.items()
    }


def platform_name(machine: str = ARCH) -> str:
    """The image's wheel platform in words: linux x86_64 (manylinux_2_28)."""
    return f"linux {machine} (manylinux_{GLIBC[0]}_{GLIBC[1]})"


def uv_platform(machine: str = ARCH) -> str:
    """uv's --python-platform for the image: x86_64-manylinux_2_28."""
    return f"{machine}-manylinux_{GLIBC[0]}_{GLIBC[1]}"


def platforms(machine: str = ARCH) -> list[str]:
    """The platform tags the image accepts, newest first."""
    modern = [f"manylinux_{GLIBC[0]}_{minor}_{machine}" for minor in range(GLIBC[1], 4, -1)]
    legacy = [f"{name}_{machine}" for name, glibc in _LEGACY.items() if glibc <= GLIBC]
    return modern + legacy


@functools.cache
def supported(python: str, machine: str = ARCH) -> frozenset[tags.Tag]:
    """Every wheel tag the image's Python (CPython major.minor) installs on its platform."""
    major, minor = (int(part) for part in python.split("."))
    cp = f"cp{major}{minor}"
    accepted = platforms(machine)
    return frozenset(
        itertools.chain(
            tags.cpython_tags((major, minor), abis=[cp], platforms=accepted),
            tags.compatible_tags((major, minor), cp, accepted),
        )
    )


def fits(release: Release, python: str, machine: str = ARCH) -> bool:
    """Whether the release has a wheel the image can install."""
    accepted = supported(python, machine)
    version = Version(f"{python}.0")
    return any(
        wheel_tags & accepted and _python_allows(requires, version)
        for wheel_tags, requires in zip(release.wheels, release.requires_python, strict=True)
    )


def _python_allows(requires: str | None, version: Version) -> bool:
    if not requires:
        return True
    try:
        return SpecifierSet(requires).contains(version, prereleases=True)
    except InvalidSpecifier:
        return True


def explain(
    name: str,
    asked: tuple[str, SpecifierSet],
    python: str,
    found: dict[Version, Release],
    index_url: str,
    *,
    machine: str = ARCH,
) -> str | None:
    """The cause and the nearest releases that would install; None when a release that was
    asked for does have a wheel (uv refused it for another reason)."""
    text, specifier = asked
    matching = sorted(specifier.filter(found))
    if not matching or any(fits(found[version], python, machine) for version in matching):
        return None
    cp = f"cp{python.replace('.', '')}"
    shown = found[matching[-1]]
    good = [
        version
        for version, release in sorted(found.items())
        if not version.is_prerelease and not release.yanked and fits(release, python, machine)
    ]
    older = [version for version in good if version < matching[0]][-1:]
    newer = [version for version in good if version > matching[-1]][:1]
    nearest = [(version, "older") for version in older] + [(version, "newer") for version in newer]
    other_pythons = _pythons(shown, machine)
    choose = f"choose a Python that {name} {shown.version} has wheels for" if other_pythons else ""
    if nearest:
        listed = " and ".join(f"{version} ({side})" for version, side in nearest)
        pins = " or ".join(f"{name}=={version}" for version, _ in nearest)
        which = "releases" if len(nearest) > 1 else "release"
        verb = "are" if len(nearest) > 1 else "is"
        way_out = (
            f"The nearest {name} {which} with a {cp} wheel for linux {machine} {verb} {listed}: "
            f"pin {pins}{f', or {choose}' if choose else ''}."
        )
    else:
        way_out = (
            f"No {name} release at {index_url} has a {cp} wheel for linux {machine}: "
            f"{f'{choose}, or ' if choose else ''}build a wheel into a wheelhouse listed with "
            "--find-links."
        )
    return (
        f"{text} has no wheel for Python {python} ({cp}) on {platform_name(machine)} at "
        f"{index_url}, and the image installs wheels only (builds from source are off): {name} "
        f"{shown.version} {_has(shown, other_pythons, machine)}. {way_out}"
    )


def _pythons(release: Release, machine: str) -> list[str]:
    """The CPython versions the release has wheels for on the image's platform."""
    accepted = set(platforms(machine))
    found = {
        (int(tag.interpreter[2]), int(tag.interpreter[3:]))
        for wheel_tags in release.wheels
        for tag in wheel_tags
        if tag.platform in accepted and re.fullmatch(r"cp\d\d+", tag.interpreter)
    }
    return [f"{major}.{minor}" for major, minor in sorted(found)]


def _has(release: Release, pythons: list[str], machine: str) -> str:
    if pythons:
        listed = pythons[0] if len(pythons) == 1 else f"{', '.join(pythons[:-1])} and {pythons[-1]}"
        return f"has linux {machine} wheels for Python {listed} only"
    if release.wheels:
        return f"has wheels, but none for {platform_name(machine)} or older"
    return "has only a source distribution"
