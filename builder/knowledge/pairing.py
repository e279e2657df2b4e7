"""Regenerate companions.json: which release of each companion package pairs with which torch.

Two kinds of companion, read from two kinds of metadata (PEP 503 pages, PEP 658 `.metadata`):
- torchvision and torchaudio are built for one torch release each; the `Requires-Dist: torch==X`
  of a Linux x86_64 wheel of every release names it;
- triton is pinned by torch itself: the `Requires-Dist: triton==Y` that applies on Linux x86_64
  in a torch wheel's metadata, for the Pythons and the image platforms its marker allows (up to
  torch 2.10 it is marked `platform_machine == "x86_64"`).

Rows are keyed by package, version and torch; a PyPI row wins over a variant index's row of the
same key, rows of an index that did not answer are kept, and a row whose values did not change
keeps its read date, as in torch.json.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.parser import HeaderParser
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from builder.knowledge import AMD64, MACHINES, PYPI, marker_environment

RELEASE_PAIRED = ("torchaudio", "torchvision")  # their own wheels pin torch==X
TORCH_PINNED = ("triton",)  # torch's wheels pin it
_VALUE_FIELDS = ("pinned_by", "pythons", "platforms", "index")
_WHEEL = re.compile(
    r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<python>[^-]+)-[^-]+-"
    r"(?P<plat>[^-]+)\.whl$"
)


@dataclass
class CompanionChanges:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def requires_dist(metadata: str) -> list[str]:
    return HeaderParser().parsestr(metadata).get_all("Requires-Dist") or []


def applies_on_linux(
    requirement: Requirement, python: str | None = None, platform: str = AMD64
) -> bool:
    """Whether the requirement's marker holds in a Linux CPython image of the platform (x86_64
    by default; of `python`, when given), with no extra asked for."""
    if requirement.marker is None:
        return True
    return requirement.marker.evaluate(marker_environment(platform, python))


def parsed(lines: Iterable[str]) -> list[Requirement]:
    """The lines that are PEP 508 requirements, parsed."""
    found = []
    for line in lines:
        try:
            found.append(Requirement(line))
        except InvalidRequirement:
            continue
    return found


def linux_requirements(lines: Iterable[str], python: str | None = None) -> list[Requirement]:
    """The requirements that apply on Linux x86_64 (and to `python`, when given)."""
    return [requirement for requirement in parsed(lines) if applies_on_linux(requirement, python)]


def pinned_version(requirement: Requirement) -> str | None:
    """`==3.1.0` -> "3.1.0"; `~=3.8.0` -> "3.8.*"; anything looser -> None."""
    specifiers = list(requirement.specifier)
    if len(specifiers) != 1:
        return None
    only = specifiers[0]
    if only.operator == "==":
        return only.version
    parts = only.version.split(".")
    if only.operator == "~=" and len(parts) > 2 and parts[-1] == "0":
        return ".".join(parts[:-1]) + ".*"
    return None


def torch_pinned_rows(
    metadata: str,
    *,
    torch: Version,
    pythons: list[str],
    index: str,
    source: str,
    today: str,
) -> list[dict[str, Any]]:
    """The triton row (one per TORCH_PINNED package) stated by one torch wheel's metadata."""
    lines = requires_dist(metadata)
    rows = []
    for package in TORCH_PINNED:
        versions = {
            python: next(
                (
                    pinned_version(r)
                    for r in linux_requirements(lines, python)
                    if canonicalize_name(r.name) == package
                ),
                None,
            )
            for python in pythons
        }
        pinned = {python: version for python, version in versions.items() if version}
        if not pinned or len(set(pinned.values())) != 1:
            continue
        platforms = _platforms_of(package, lines, list(pinned))
        rows.append(
            {
                "package": package,
                "version": next(iter(pinned.values())),
                "torch": torch.public,
                "pinned_by": "torch",
                "pythons": None if len(pinned) == len(pythons) else sorted(pinned, key=_py),
                "platforms": None if len(platforms) == len(MACHINES) else platforms,
                "index": index,
                "source": source,
                "read": today,
            }
        )
    return rows


def _platforms_of(package: str, lines: list[str], pythons: list[str]) -> list[str]:
    """The image platforms on which a requirement of `package` in `lines` holds for one of
    `pythons`."""
    requirements = [r for r in parsed(lines) if canonicalize_name(r.name) == package]
    return [
        platform
        for platform in MACHINES
        if any(applies_on_linux(r, python, platform) for r in requirements for python in pythons)
    ]


def _py(python: str) -> tuple[int, ...]:
    return tuple(int(part) for part in python.split("."))


@dataclass(frozen=True)
class Release:
    version: Version
    filename: str
    url: str


def release_of(filename: str, url: str, variant: str | None) -> Release | None:
    """A Linux x86_64 wheel of a final release; on a variant index only one tagged with its
    variant (`0.20.1+cu121`), on PyPI only one without a local tag."""
    match = _WHEEL.match(filename)
    if not match or "linux" not in match["plat"] or "x86_64" not in match["plat"]:
        return None
    try:
        version = Version(match["version"])
    except InvalidVersion:
        return None
    if version.is_prerelease or version.local != variant:
        return None
    return Release(version, filename, url)


def torch_of(metadata: str) -> Version | None:
    """The torch release a companion wheel's `Requires-Dist: torch==X` names."""
    for requirement in linux_requirements(requires_dist(metadata)):
        if canonicalize_name(requirement.name) == "torch":
            pinned = pinned_version(requirement)
            return None if pinned is None or pinned.endswith("*") else Version(pinned)
    return None


def release_row(
    release: Release,
    torch: Version,
    *,
    package: str,
    index_url: str,
    variant: str | None,
    today: str,
) -> dict[str, Any]:
    return {
        "package": package,
        "version": release.version.public,
        "torch": torch.public,
        "pinned_by": package,
        "pythons": None,
        "platforms": None,
        "index": PYPI if variant is None else index_url.rstrip("/"),
        "source": (
            f"{index_url.rstrip('/')}/{package}/ (PEP 503); Requires-Dist of {release.filename}"
        ),
        "read": today,
    }


def label(row: dict[str, Any]) -> str:
    return f"{row['package']} {row['version']} (torch {row['torch']})"


def _key(row: dict[str, Any]) -> tuple[str, str, str]:
    return (row["package"], row["version"], row["torch"])


def merge(
    existing: list[dict[str, Any]], fetched: list[dict[str, Any]], answered: set[str]
) -> tuple[list[dict[str, Any]], CompanionChanges]:
    """Rows of the indexes that answered replace theirs; one row per key, PyPI's first."""
    changes = CompanionChanges()
    old = {_key(row): row for row in existing}
    kept = [row for row in existing if row["index"] not in answered]
    chosen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in sorted([*kept, *fetched], key=lambda r: (r["index"] != PYPI, r["index"])):
        chosen.setdefault(_key(row), row)
    fetched_ids = {id(row) for row in fetched}
    merged = []
    for key, candidate in chosen.items():
        row = dict(candidate)
        previous = old.get(key)
        if id(candidate) not in fetched_ids:
            changes.kept.append(label(row))
        elif previous is None:
            changes.added.append(label(row))
        elif all(previous.get(name) == row.get(name) for name in _VALUE_FIELDS):
            row["read"] = previous["read"]
            changes.unchanged.append(label(row))
        else:
            changes.changed.append(label(row))
        merged.append(row)
    return sort_rows(merged), changes


def sort_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: (row["package"], Version(row["torch"]), row["version"]))


def dump(rows: list[dict[str, Any]]) -> str:
    """The companions.json text: sorted rows, sorted keys, one stable layout."""
    return json.dumps({"companions": sort_rows(rows), "schema": 1}, indent=2, sort_keys=True) + "\n"
