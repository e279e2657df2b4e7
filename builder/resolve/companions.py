"""The companion packages of the chosen torch build: torchvision, torchaudio, triton, ...

A companion is built for one torch release (companions.json says which). The spec names the
companions it wants in `packages` or its requirements file; triton comes with every CUDA build
whose torch release pins it. Each is pinned to the release that pairs with the chosen torch, from
the same index (`torchvision==0.20.1+cu121` beside `torch==2.5.1+cu121`); a user pin that
excludes that release is an error naming the pair.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from builder.errors import ResolutionError
from builder.knowledge import PYPI, Companion, Knowledge, TorchBuild
from builder.spec.model import Spec
from builder.spec.sources import logical_lines

NAMED = "named in the spec"
TORCH_PIN = "torch's own pin"
_INCLUDE = re.compile(r"^(?:-r|--requirement)(?:\s*=\s*|\s+)(\S+)")


class CompanionRecord(TypedDict):
    package: str
    version: str
    wheel_version: str
    pin: str
    index: str
    torch: str
    source: str
    reason: str


@dataclass(frozen=True)
class Pairing:
    """A companion pinned to the release that pairs with the chosen torch build."""

    package: str
    version: str  # public: "0.20.1" ("3.8.*" where torch pins a compatible range)
    wheel_version: str  # on the build's index: "0.20.1+cu121" on a variant index
    index: str
    torch: str
    source: str
    reason: str  # NAMED or TORCH_PIN

    @property
    def pin(self) -> str:
        return f"{self.package}=={self.wheel_version}"

    def admits(self, version: str) -> bool:
        return SpecifierSet(f"=={self.wheel_version}").contains(version, prereleases=True)

    def record(self) -> CompanionRecord:
        return {
            "package": self.package,
            "version": self.version,
            "wheel_version": self.wheel_version,
            "pin": self.pin,
            "index": self.index,
            "torch": self.torch,
            "source": self.source,
            "reason": self.reason,
        }


def pairings(spec: Spec, build: TorchBuild, knowledge: Knowledge) -> tuple[Pairing, ...]:
    """The companions the project asks for, each paired with `build`; ResolutionError for a pin
    that excludes the pair, or a companion the knowledge base knows no pair for."""
    known = set(knowledge.companion_packages())
    named = {
        name: requirement
        for requirement in requested(spec)
        if (name := str(canonicalize_name(requirement.name))) in known
    }
    found = []
    for package in sorted(known):
        requirement = named.get(package)
        if requirement is not None:
            row = _paired_row(package, build, knowledge)
            _check_pin(requirement, row, build, knowledge)
            found.append(_pairing(row, build, NAMED))
            continue
        pinned = knowledge.companion_for(package, build.torch)
        if (
            pinned is not None
            and pinned.pinned_by == "torch"
            and not build.is_cpu
            and pinned.applies_to(spec.python)
        ):
            found.append(_pairing(pinned, build, TORCH_PIN))
    return tuple(found)


def requested(spec: Spec) -> list[Requirement]:
    """The requirements of the spec's `packages` and of its requirements file (with the files
    it includes through -r); option lines and lines that are no PEP 508 requirement are left
    to the locker."""
    lines = list(spec.packages)
    if spec.requirements is not None:
        lines += list(_file_lines(spec.requirements, set()))
    found = []
    for line in lines:
        try:
            found.append(Requirement(line))
        except InvalidRequirement:
            continue
    return found


def _file_lines(path: Path, seen: set[Path]) -> Iterator[str]:
    if path in seen:
        return
    seen.add(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ResolutionError(
            f"cannot read the requirements file {path}: {error.strerror}. Fix the path in "
            "'requirements' (or in the -r line that includes it)."
        ) from None
    for _, line in logical_lines(text):
        included = _included(line)
        if included is not None:
            yield from _file_lines((path.parent / included).resolve(), seen)
        elif not line.startswith("-"):
            yield line


def _included(line: str) -> str | None:
    """The file an `-r FILE` / `--requirement FILE` / `--requirement=FILE` line includes."""
    match = _INCLUDE.match(line)
    return match.group(1) if match else None


def _paired_row(package: str, build: TorchBuild, knowledge: Knowledge) -> Companion:
    row = knowledge.companion_for(package, build.torch)
    if row is not None:
        return row
    rows = knowledge.companions_of(package)
    newest = max(rows, key=lambda r: r.torch)
    raise ResolutionError(
        f"the knowledge base (version {knowledge.version}) knows no {package} release built for "
        f"torch {build.torch} (its newest pair is {package} {newest.version} for torch "
        f"{newest.torch}). If one was released since, run `reprobuild knowledge refresh`; "
        f'otherwise pin torch = "{newest.torch}" for {package} {newest.version}, or drop '
        f"{package}."
    )


def _check_pin(
    requirement: Requirement, row: Companion, build: TorchBuild, knowledge: Knowledge
) -> None:
    if not requirement.specifier or _admits(requirement.specifier, row):
        return
    package = row.package
    pair = f"torch {build.torch} pairs with {package} {row.version}."
    fix = f"(or leave {package} unpinned and reprobuild pins the pair)"
    exact = _exact(requirement.specifier)
    if exact is not None:
        torches = knowledge.built_for(package, exact)
        if not torches:
            raise ResolutionError(
                f"{package} {exact} is built for no torch release the knowledge base knows; "
                f"{pair} Write {package}=={row.version} {fix}."
            )
        newest_torch = torches[-1]
        raise ResolutionError(
            f"{package} {exact} is built for torch {_and([str(t) for t in torches])}; {pair} "
            f'Write {package}=={row.version} {fix}, or pin torch = "{newest_torch}" for '
            f"{package} {exact}."
        )
    fitting = [r for r in knowledge.companions_of(package) if _admits(requirement.specifier, r)]
    alternative = ""
    if fitting:
        best = max(fitting, key=lambda r: r.torch)
        alternative = f', or pin torch = "{best.torch}" for {package} {best.version}'
    raise ResolutionError(
        f"'{requirement}' excludes {package} {row.version}, and {pair} Widen the range to "
        f"admit {row.version} {fix}{alternative}."
    )


def _admits(specifier: SpecifierSet, row: Companion) -> bool:
    """Whether the user's specifier allows the row's release (for a `3.8.*` row, its first)."""
    exact = _exact(specifier)
    if exact is not None:
        return row.admits(exact)
    return specifier.contains(Version(row.version.replace("*", "0")), prereleases=True)


def _exact(specifier: SpecifierSet) -> Version | None:
    """The version of an `==X` pin (no wildcard), None for anything else."""
    pins = [s for s in specifier if s.operator in ("==", "===") and not s.version.endswith("*")]
    if len(pins) != 1:
        return None
    try:
        return Version(pins[0].version)
    except InvalidVersion:
        return None


def _pairing(row: Companion, build: TorchBuild, reason: str) -> Pairing:
    tagged = row.per_variant and build.index != PYPI
    return Pairing(
        package=row.package,
        version=row.version,
        wheel_version=f"{row.version}+{build.variant}" if tagged else row.version,
        index=build.index,
        torch=str(build.torch),
        source=row.source,
        reason=reason,
    )


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
