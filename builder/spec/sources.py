"""Read the dependency files a repository already has, each entry with the file and line it came
from: requirements files (their `-r` includes followed), `pyproject.toml` (`[project]`,
`[dependency-groups]`, optional dependencies), `setup.cfg` and a conda `environment.yml`.

Only reading happens here; what the spec makes of it is `spec.discover`'s choice.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from builder.errors import InitError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

_COMMENT = re.compile(r"(^|\s+)#.*$")
_INCLUDE = re.compile(r"^(?:-r|--requirement)(?:\s+|=)(\S+)$")
_CONSTRAINT = re.compile(r"^(?:-c|--constraint)(?:\s+|=)(\S+)$")
_EDITABLE = re.compile(r"^(?:-e|--editable)(?:\s+|=)(\S+)$")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
# An index or find-links line naming one of PyTorch's own indexes: its first path segment.
_PYTORCH_INDEX = re.compile(
    r"^(?:-i|--index-url|--extra-index-url|-f|--find-links)(?:\s+|=)"
    r"https?://download\.pytorch\.org/whl/([^/\s]+)"
)
_BUILD_VARIANT = re.compile(r"^(?:cu\d{3,}|cpu)$")
_CONDA = re.compile(r"^(?:[\w.-]+::)?([A-Za-z0-9_.-]+)\s*(.*)$")
_GROUP_NAME = re.compile(r"[-_.]+")


@dataclass(frozen=True)
class Origin:
    """Where a value was read: a file relative to the project, and its line when known."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return self.file if self.line is None else f"{self.file} line {self.line}"


@dataclass(frozen=True)
class Listed:
    """One requirement as a file wrote it (extras and markers kept)."""

    text: str
    requirement: Requirement
    origin: Origin

    @property
    def name(self) -> str:
        return canonicalize_name(self.requirement.name)


@dataclass(frozen=True)
class Aside:
    """A line that is no requirement: a pip option, an editable install, a URL or local path.
    `portable`: the lock can read a requirements file that holds it (uv honours it).
    `variant`: the torch build (cu118, cpu) a line naming a PyTorch index asks for."""

    text: str
    origin: Origin
    reason: str
    portable: bool
    variant: str | None = None


@dataclass(frozen=True)
class RequirementsFiles:
    """Requirements files and the files they include with `-r`, in reading order."""

    listed: tuple[Listed, ...]
    asides: tuple[Aside, ...]
    files: tuple[str, ...]


@dataclass(frozen=True)
class Pyproject:
    name: str | None
    requires_python: str | None
    dependencies: tuple[Listed, ...] | None  # None: no [project].dependencies
    groups: dict[str, tuple[Listed, ...]]  # dependency groups and optional dependencies
    has_reprobuild: bool


@dataclass(frozen=True)
class SetupCfg:
    name: str | None
    requires_python: str | None
    install_requires: tuple[Listed, ...]
    extras: dict[str, tuple[Listed, ...]]


@dataclass(frozen=True)
class CondaPackage:
    """A conda dependency: its name, its version as PEP 440 text ("" when unpinned)."""

    name: str
    version: str
    written: str
    origin: Origin


@dataclass(frozen=True)
class CondaEnvironment:
    conda: tuple[CondaPackage, ...]
    pip: tuple[Listed, ...]
    pip_asides: tuple[Aside, ...]
    included: tuple[str, ...]  # requirements files the pip section includes with `-r`


def group_key(name: str) -> str:
    """A dependency group's or extra's name as PEP 735 and PEP 685 compare them."""
    return _GROUP_NAME.sub("-", name).lower()


def read_text(path: Path, relative: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InitError(
            f"{relative} cannot be read ({error}): make it a readable UTF-8 text file, "
            "then run `reprobuild init` again."
        ) from None


def requirement(text: str, origin: Origin) -> Listed:
    try:
        return Listed(text, Requirement(text), origin)
    except InvalidRequirement as error:
        raise InitError(
            f"{origin}: {text!r} is not a PEP 508 requirement ({str(error).splitlines()[0]}); "
            "fix or remove the "
            "line, then run `reprobuild init` again."
        ) from None


# Requirements files.


def read_requirements(project: Path, relatives: list[str]) -> RequirementsFiles:
    """Requirements files with their `-r` includes (each file read once), every line sorted into
    a requirement or an aside."""
    reader = _RequirementsReader(project)
    for relative in relatives:
        reader.read(relative, None)
    return RequirementsFiles(tuple(reader.listed), tuple(reader.asides), tuple(reader.seen))


class _RequirementsReader:
    def __init__(self, project: Path) -> None:
        self.project = project
        self.listed: list[Listed] = []
        self.asides: list[Aside] = []
        self.seen: list[str] = []

    def read(self, relative: str, included_at: Origin | None) -> None:
        if relative in self.seen:
            return
        path = self.project / relative
        if not path.is_file():
            where = f"{included_at}: -r names" if included_at else "names"
            raise InitError(
                f"{where} {relative}, which does not exist (looked for {path}); fix the "
                "include, then run `reprobuild init` again."
            )
        self.seen.append(relative)
        for number, line in logical_lines(read_text(path, relative)):
            self.line(line, Origin(relative, number))

    def line(self, line: str, origin: Origin) -> None:
        include = _INCLUDE.match(line)
        if include:
            folder = Path(origin.file).parent
            self.read((folder / include.group(1)).as_posix(), origin)
            return
        aside = _aside(line, origin)
        if aside is not None:
            self.asides.append(aside)
            return
        self.listed.append(requirement(requirement_text(line), origin))


def _aside(line: str, origin: Origin) -> Aside | None:
    if line.startswith("-"):
        return _option(line, origin)
    if _URL.match(line):
        return Aside(line, origin, "a URL without a name; the lock reads it as written", True)
    if line.startswith((".", "/", "~")):
        return Aside(line, origin, "a local path: the image's code layer carries the code", False)
    return None


def _option(line: str, origin: Origin) -> Aside:
    if _CONSTRAINT.match(line):
        return Aside(line, origin, "a constraints file, left for the lock to read", True)
    if _EDITABLE.match(line):
        return Aside(
            line, origin, "an editable install: the image's code layer carries the code", False
        )
    index = _PYTORCH_INDEX.match(line)
    if index is not None and not index.group(1).endswith(".html"):  # torch_stable.html: all
        return _pytorch_index(line, origin, index.group(1))
    return Aside(line, origin, "a pip option", True)


def _pytorch_index(line: str, origin: Origin, segment: str) -> Aside:
    if _BUILD_VARIANT.match(segment):
        return Aside(line, origin, f"PyTorch's {segment} index", True, segment)
    return Aside(
        line,
        origin,
        f"PyTorch's {segment} index: reprobuild makes CUDA and CPU images only, so the packages "
        "are copied and torch is one of its builds",
        False,
    )


def requirement_text(line: str) -> str:
    """A requirements-file line without its per-requirement options (` --hash=sha256:...`,
    ` --config-settings ...`): the PEP 508 requirement alone."""
    return line.split(" --", 1)[0].strip()


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines without comments, a trailing backslash joining the next, each with the number of
    the line it starts on."""
    found: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        stripped = _COMMENT.sub("", raw).strip()
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        line = (pending + stripped).strip()
        pending = ""
        if line:
            found.append((start, line))
    if pending.strip():
        found.append((start, pending.strip()))
    return found


# pyproject.toml and setup.cfg.


def read_pyproject(project: Path) -> Pyproject:
    text = read_text(project / "pyproject.toml", "pyproject.toml")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InitError(
            f"pyproject.toml is not valid TOML: {error}; fix it, then run `reprobuild init` again."
        ) from None
    lines = text.splitlines()
    table = _table(document.get("project"))
    tool = _table(document.get("tool"))
    dependencies = table.get("dependencies")
    groups = {
        **_optional_dependencies(table, lines),
        **_dependency_groups(_table(document.get("dependency-groups")), lines),
    }
    return Pyproject(
        name=_string(table.get("name")),
        requires_python=_string(table.get("requires-python")),
        dependencies=None if dependencies is None else _listed(dependencies, lines, "dependencies"),
        groups=groups,
        has_reprobuild="reprobuild" in tool,
    )


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _listed(values: Any, lines: list[str], where: str) -> tuple[Listed, ...]:
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise InitError(
            f"pyproject.toml: {where} must be a list of requirement strings; fix it, then run "
            "`reprobuild init` again."
        )
    return tuple(requirement(value, _origin_in("pyproject.toml", lines, value)) for value in values)


def _optional_dependencies(
    project: dict[str, Any], lines: list[str]
) -> dict[str, tuple[Listed, ...]]:
    extras = _table(project.get("optional-dependencies"))
    found = {
        group_key(name): _listed(values, lines, f"[project.optional-dependencies] {name}")
        for name, values in extras.items()
    }
    own = canonicalize_name(_string(project.get("name")) or "")
    return {name: _expand_self(listed, own, found, set()) for name, listed in found.items()}


def _expand_self(
    listed: tuple[Listed, ...], own: str, extras: dict[str, tuple[Listed, ...]], seen: set[str]
) -> tuple[Listed, ...]:
    """An extra that names the project itself (`proj[train]`) stands for those extras' lines."""
    expanded: list[Listed] = []
    for item in listed:
        if own and item.name == own:
            for extra in sorted(item.requirement.extras):
                key = group_key(extra)
                if key not in seen:
                    expanded += _expand_self(extras.get(key, ()), own, extras, seen | {key})
        else:
            expanded.append(item)
    return tuple(expanded)


def _dependency_groups(groups: dict[str, Any], lines: list[str]) -> dict[str, tuple[Listed, ...]]:
    """PEP 735 groups, `{include-group = "..."}` entries expanded."""
    by_key = {group_key(name): values for name, values in groups.items()}

    def expand(key: str, trail: tuple[str, ...]) -> tuple[Listed, ...]:
        if key in trail:
            raise InitError(
                f"pyproject.toml: dependency group {key!r} includes itself "
                f"({' -> '.join((*trail, key))}); break the cycle, then run `reprobuild init` "
                "again."
            )
        entries = by_key.get(key)
        if not isinstance(entries, list):
            raise InitError(
                f"pyproject.toml: [dependency-groups] has no list named {key!r}; fix the "
                "include-group, then run `reprobuild init` again."
            )
        found: list[Listed] = []
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("include-group"), str):
                found += expand(group_key(entry["include-group"]), (*trail, key))
            else:
                found += _listed([entry], lines, f"[dependency-groups] {key}")
        return tuple(found)

    return {key: expand(key, ()) for key in by_key}


def read_setup_cfg(project: Path) -> SetupCfg:
    import configparser

    text = read_text(project / "setup.cfg", "setup.cfg")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error as error:
        raise InitError(
            f"setup.cfg cannot be parsed: {error}; fix it, then run `reprobuild init` again."
        ) from None
    lines = text.splitlines()
    extras = {
        group_key(name): _cfg_list(value, lines)
        for name, value in (
            parser.items("options.extras_require")
            if parser.has_section("options.extras_require")
            else []
        )
    }
    return SetupCfg(
        name=parser.get("metadata", "name", fallback=None),
        requires_python=parser.get("options", "python_requires", fallback=None),
        install_requires=_cfg_list(parser.get("options", "install_requires", fallback=""), lines),
        extras=extras,
    )


def _cfg_list(value: str, lines: list[str]) -> tuple[Listed, ...]:
    entries = [_COMMENT.sub("", entry).strip() for entry in value.splitlines()]
    return tuple(
        requirement(entry, _origin_in("setup.cfg", lines, entry)) for entry in entries if entry
    )


def _origin_in(file: str, lines: list[str], needle: str) -> Origin:
    """The first line of a file holding `needle` as a whole entry (bare, quoted or in a list:
    "torch" is not in `name = "torch-trainer"`); without a line when none does."""
    entry = re.compile(rf"(?:^|[\s\"'\[,])({re.escape(needle)})(?:$|[\s\"',\]#])")
    for number, line in enumerate(lines, start=1):
        if entry.search(line):
            return Origin(file, number)
    return Origin(file)


# environment.yml.


def read_environment(project: Path, relative: str) -> CondaEnvironment:
    import yaml

    text = read_text(project / relative, relative)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{relative} line {mark.line + 1}" if mark is not None else relative
        problem = getattr(error, "problem", None) or str(error)
        raise InitError(
            f"{where} is not valid YAML ({problem}); fix it, then run `reprobuild init` again."
        ) from None
    entries = document.get("dependencies") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise InitError(
            f"{relative} has no 'dependencies' list; a conda environment file names its packages "
            "there. Fix it, then run `reprobuild init` again."
        )
    lines = text.splitlines()
    conda: list[CondaPackage] = []
    pip = _RequirementsReader(project)  # the pip section reads as a requirements file would
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("pip"), list):
            for line in entry["pip"]:
                pip.line(str(line), _origin_in(relative, lines, str(line)))
        elif isinstance(entry, str):
            conda.append(_conda_package(entry, _origin_in(relative, lines, entry)))
    return CondaEnvironment(tuple(conda), tuple(pip.listed), tuple(pip.asides), tuple(pip.seen))


def _conda_package(written: str, origin: Origin) -> CondaPackage:
    """`pytorch=2.1`, `pytorch::pytorch==2.1.0`, `python>=3.10`, `numpy 1.26.* py310_0`."""
    match = _CONDA.match(written.strip())
    name, rest = (match.group(1), match.group(2)) if match else (written, "")
    return CondaPackage(name.lower(), _conda_version(rest.strip()), written, origin)


def _conda_version(rest: str) -> str:
    """A conda match spec's version as PEP 440: `=2.1` (conda's fuzzy match) is `==2.1.*`,
    `=2.1.0` and `==2.1.0` are exact, a range stays as written; a build string is dropped."""
    if not rest:
        return ""
    if rest.startswith("==") or rest[0].isdigit():
        version = re.split(r"[=\s]", rest.lstrip("="), maxsplit=1)[0]
        return f"=={version}"
    if rest.startswith("=") and not rest.startswith("=="):
        version = re.split(r"[=\s]", rest[1:], maxsplit=1)[0]
        exact = version.count(".") >= 2 or version.endswith("*")
        return f"=={version}" if exact else f"=={version}.*"
    return rest.split(maxsplit=1)[0]
