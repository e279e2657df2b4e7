"""Select knowledge rows by a requirement such as `torch==2.5.1`, `2.5.*` or `>=2.7`."""

from __future__ import annotations

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from builder.errors import QueryError, ReprobuildError
from builder.knowledge import Knowledge, TorchBuild


def specifier_of(text: str) -> SpecifierSet:
    """Read `torch==2.5.1`, `2.5.1`, `2.5.*` or `>=2.7,<2.9` as a specifier on torch."""
    cleaned = text.strip()
    try:
        return SpecifierSet(f"=={Version(cleaned).public}")
    except InvalidVersion:
        pass
    if not cleaned[:1].isalpha():
        cleaned = f"torch{cleaned if cleaned[:1] in '<>=!~' else '==' + cleaned}"
    try:
        requirement = Requirement(cleaned)
    except (InvalidRequirement, InvalidSpecifier):
        requirement = None
    if requirement is None or requirement.name.lower() != "torch":
        raise QueryError(
            f"{text!r} is not a torch requirement; write e.g. torch==2.5.1, 2.5.* or '>=2.7'."
        )
    return requirement.specifier


def matching(knowledge: Knowledge, text: str | None) -> list[TorchBuild]:
    if text is None:
        return list(knowledge.builds)
    specifier = specifier_of(text)
    found = [build for build in knowledge.builds if specifier.contains(build.torch)]
    if not found:
        releases = sorted({build.torch for build in knowledge.builds})
        newest = releases[-1]
        fix = (
            f"if it came out after {newest}, run `reprobuild knowledge refresh`"
            if _admits_later(specifier, newest)
            else "`reprobuild knowledge show` without a requirement lists every release"
        )
        raise ReprobuildError(
            f"no torch release matching {text!r} is in the knowledge base (it knows "
            f"{releases[0]} to {newest}): {fix}."
        )
    return found


def _admits_later(specifier: SpecifierSet, newest: Version) -> bool:
    """Whether a release after `newest` could match: only then can a refresh find one."""
    probes = [Version(f"{newest.major}.{newest.minor}.{newest.micro + 1}"), Version("9999")]
    for one in specifier:
        try:
            probes.append(Version(one.version.removesuffix(".*")))
        except InvalidVersion:
            continue
    return any(probe > newest and specifier.contains(probe) for probe in probes)
