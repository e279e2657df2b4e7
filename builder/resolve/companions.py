"""The companion packages of the chosen torch build: torchvision, torchaudio, triton, ...

A companion is built for one torch release (companions.json says which). The spec names the
companions it wants in `packages` or its requirements file; triton comes with every CUDA build
whose torch release pins it on the build's platform. Each is pinned to the release that pairs
with the chosen torch, from the same index (`torchvision==0.20.1+cu121` beside
`torch==2.5.1+cu121`). A named companion is
one whose marker holds in the image; a candidate build it does not pair with (no known pair, or
one the user's pin excludes, local tag included) is rejected, and the error names the pair.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from builder.errors import ResolutionError
from builder.knowledge import AMD64, PYPI, Companion, Knowledge, TorchBuild
from builder.knowledge.pairing import applies_on_linux
from builder.spec.model import Spec
from builder.spec.sources import logical_lines, requirement_text

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

    @property
    def local(self) -> str | None:
        """The local tag of the pair on its index: "cu121" on a variant index, else None."""
        return self.wheel_version.partition("+")[2] or None

    def admits(self, version: str) -> bool:
        """Whether a locked version is the pair: exactly its wheel version, local tag included
        (any release of a `3.8.*` pair)."""
        if self.wheel_version.endswith("*"):
            return SpecifierSet(f"=={self.wheel_version}").contains(version, prereleases=True)
        try:
            return Version(version) == Version(self.wheel_version)
        except InvalidVersion:
            return False

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


def named(spec: Spec, knowledge: Knowledge) -> tuple[Requirement, ...]:
    """The companions the spec names, as written, where their markers hold in the image (Linux
    x86_64, CPython, the spec's Python)."""
    known = set(knowledge.companion_packages())
    return tuple(
        requirement
        for requirement in requested(spec)
        if _name(requirement) in known and applies_on_linux(requirement, spec.python)
    )


def unpaired(
    requirements: Sequence[Requirement], build: TorchBuild, knowledge: Knowledge
) -> list[str]:
    """Why `build` cannot take each named companion, one short reason each (a candidate's
    rejections); empty when every one pairs with it."""
    reasons = []
    for requirement in requirements:
        package = _name(requirement)
        row = knowledge.companion_for(package, build.torch)
        if row is None:
            reasons.append(
                f"the knowledge base knows no {package} release built for torch {build.torch}"
            )
            continue
        pairing = _pairing(row, build, NAMED)
        if not _admits(requirement.specifier, pairing):
            reasons.append(
                f"'{_written(requirement)}' excludes its pair, {package} {pairing.wheel_version}"
            )
    return reasons


def pairings(
    requirements: Sequence[Requirement], python: str, build: TorchBuild, knowledge: Knowledge
) -> tuple[Pairing, ...]:
    """The companions paired with `build`: each named one (`requirements`, from `named`), then
    those torch pins for `python`; ResolutionError for a pin that excludes its pair, or a
    companion the knowledge base knows no pair for."""
    found = []
    for package in knowledge.companion_packages():
        asked = [requirement for requirement in requirements if _name(requirement) == package]
        if asked:
            pairing = _pairing(_paired_row(package, build, knowledge), build, NAMED)
            for requirement in asked:
                _check_pin(requirement, pairing, build, knowledge)
            found.append(pairing)
            continue
        pinned = knowledge.companion_for(package, build.torch)
        if (
            pinned is not None
            and pinned.pinned_by == "torch"
            and not build.is_cpu
            and pinned.applies_to(python)
            and pinned.applies_on(build.platform)
        ):
            found.append(_pairing(pinned, build, TORCH_PIN))
    return tuple(found)


def requested(spec: Spec) -> list[Requirement]:
    """The requirements of the spec's `packages` and of its requirements file (with the files
    it includes through -r), without their per-requirement options (`--hash=...`); option lines
    and lines that are no PEP 508 requirement are left to the locker."""
    lines = list(spec.packages)
    if spec.requirements is not None:
        lines += list(_file_lines(spec.requirements, set()))
    found = []
    for line in lines:
        try:
            found.append(Requirement(requirement_text(line)))
        except InvalidRequirement:
            continue
    return found


def _name(requirement: Requirement) -> str:
    return str(canonicalize_name(requirement.name))


def _written(requirement: Requirement) -> str:
    return f"{requirement.name}{requirement.specifier}"


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
    requirement: Requirement, pairing: Pairing, build: TorchBuild, knowledge: Knowledge
) -> None:
    if not _admits_release(requirement.specifier, pairing.version):
        raise ResolutionError(_release_excluded(requirement, pairing, knowledge))
    exact = _exact(requirement.specifier)
    if exact is not None and not _admits_build(requirement.specifier, pairing):
        raise ResolutionError(_build_excluded(exact, pairing, build, knowledge))


def _release_excluded(requirement: Requirement, pairing: Pairing, knowledge: Knowledge) -> str:
    package = pairing.package
    pair = f"torch {pairing.torch} pairs with {package} {pairing.version}."
    exact = _exact(requirement.specifier)
    if exact is not None:
        torches = knowledge.built_for(package, exact)
        if not torches:
            return (
                f"{package} {exact} is built for no torch release the knowledge base knows; "
                f"{pair} Write {package}=={pairing.version} {_fix(package)}."
            )
        return (
            f"{package} {exact} is built for torch {_and([str(t) for t in torches])}; {pair} "
            f"Write {package}=={pairing.version} {_fix(package)}, or pin torch = "
            f'"{torches[-1]}" for {package} {exact}.'
        )
    fitting = [
        row
        for row in knowledge.companions_of(package)
        if _admits_release(requirement.specifier, row.version)
    ]
    alternative = ""
    if fitting:
        best = max(fitting, key=lambda row: row.torch)
        alternative = f', or pin torch = "{best.torch}" for {package} {best.version}'
    return (
        f"'{_written(requirement)}' excludes {package} {pairing.version}, and {pair} Widen the "
        f"range to admit {pairing.version} {_fix(package)}{alternative}."
    )


def _build_excluded(
    exact: Version, pairing: Pairing, build: TorchBuild, knowledge: Knowledge
) -> str:
    """An `==X+tag` pin of the paired release, but of another build than the one this torch
    build's index serves."""
    package = pairing.package
    where = "PyPI" if pairing.index == PYPI else pairing.index
    alternative = ""
    if any(
        other.variant == exact.local and other.is_cpu == build.is_cpu
        for other in knowledge.builds_for(build.torch, build.platform)
    ):
        alternative = f', or pin torch = "{build.torch}+{exact.local}" for {package} {exact}'
    return (
        f"{package} {exact} is a +{exact.local} build, and torch {build.label} pairs with "
        f"{package} {pairing.wheel_version} from {where}. Write {pairing.pin} "
        f"{_fix(package)}{alternative}."
    )


def _fix(package: str) -> str:
    return f"(or leave {package} unpinned and reprobuild pins the pair)"


def _admits(specifier: SpecifierSet, pairing: Pairing) -> bool:
    return _admits_release(specifier, pairing.version) and _admits_build(specifier, pairing)


def _admits_release(specifier: SpecifierSet, version: str) -> bool:
    """Whether the user's specifier allows the release (for a `3.8.*` pair, its first), local
    tags aside."""
    exact = _exact(specifier)
    if exact is not None:
        return SpecifierSet(f"=={version}").contains(Version(exact.public), prereleases=True)
    return specifier.contains(Version(version.replace("*", "0")), prereleases=True)


def _admits_build(specifier: SpecifierSet, pairing: Pairing) -> bool:
    """An `==X+tag` pin must name the build the pair's index serves: its variant on a variant
    index, none on PyPI (or for a companion built once for every variant)."""
    exact = _exact(specifier)
    return exact is None or exact.local is None or exact.local == pairing.local


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
    # The variant indexes tag their x86_64 companions (torchvision-0.20.1+cu121) but not their
    # aarch64 ones (torchvision-0.24.1-cp312-cp312-manylinux_2_28_aarch64.whl on cu130,
    # pytorch/vision#9330): an untagged pin matches either.
    tagged = row.per_variant and build.index != PYPI and build.platform == AMD64
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
