"""Which files of a project are its code: what the image's code layer holds, and what a tree's
changes are judged on (`source.git_state`).

The code is what git would commit, within the project folder: tracked files and untracked files
that git does not ignore (nested .gitignore files, .git/info/exclude, the global excludes), as
`git ls-files` lists them, less tracked files deleted since. Outside a git checkout (or where git
cannot answer): the files of the project folder less what the .gitignore files in it ignore.
Then the project's .dockerignore (read as Docker reads it, from the project's root) and the
spec's `exclude` take files out, and the spec's `include` puts back a file that any of these
dropped. Whatever the rules say, version control, secrets, bytecode, reprobuild's own outputs
and symbolic links never go in.

A leaf module: `reprobuild run` asks for the git state on its way to the container's start, and
pathspec (a gitignore matcher) is imported only when a pattern is to be matched.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from builder import layout
from builder.errors import RenderError

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

# reprobuild's own outputs, at the project's root: never code, never a change to the tree.
OUTPUTS = (
    layout.WORK_FOLDER,
    layout.RECORD_FILE,
    layout.RUNS_FOLDER,
    *layout.PUBLISHED_FILES,
)
# Never in an image, tracked or named by `include`: version control, secrets, and bytecode (the
# build trusts the context's copies to hold none: see build/normalise.py).
NEVER = (
    ".git",
    ".hg",
    ".svn",
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "id_rsa*",
    "id_ed25519*",
    "id_ecdsa*",
    ".netrc",
    ".pypirc",
    ".npmrc",
    ".aws",
    ".ssh",
    ".gnupg",
    "__pycache__",
    "*.pyc",
    "*.pyo",
)
# Left out unless `include` names them: environments, tool caches, build outputs.
LEFT_OUT = (
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "dist",
    "build",
    "*.egg-info",
    ".ipynb_checkpoints",
)
DOCKERIGNORE = ".dockerignore"
GITIGNORE = ".gitignore"
LARGE = 10_000_000  # bytes: a code file this big is named, with how to keep it out

_NEVER = re.compile("|".join(fnmatch.translate(pattern) for pattern in NEVER))
_LEFT_OUT = re.compile("|".join(fnmatch.translate(pattern) for pattern in LEFT_OUT))


@dataclass(frozen=True)
class Rules:
    """The spec's `exclude` and `include`: gitignore-style patterns, relative to the project."""

    exclude: tuple[str, ...] = ()
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class CodeFile:
    path: str  # relative to the project, `/` between parts
    size: int  # bytes


@dataclass(frozen=True)
class CodeLayer:
    """What went into the image's code layer, and by which spec rules."""

    rules: Rules
    files: int
    size: int  # bytes, all files together
    large: tuple[CodeFile, ...]  # every file of LARGE bytes or more, largest first


def never(name: str) -> bool:
    """Whether a file or folder name is one that never goes into an image (NEVER)."""
    return _NEVER.match(name) is not None


class Filter:
    """Whether a path (relative to the project, `/` between parts) is code, by every rule but
    git's own: git's verdict comes with the path (`ignored`)."""

    def __init__(self, project: Path, rules: Rules, skip: tuple[str, ...] = ()) -> None:
        self._skip = skip  # folders in the project that are not its code, relative to it
        self._dropped = [spec for spec in (_docker_spec(project), _spec(rules.exclude)) if spec]
        self._include = _spec(rules.include)

    @property
    def includes(self) -> bool:
        """Whether the spec has `include` patterns: they may bring back any file dropped."""
        return self._include is not None

    def may_hold(self, folder: str) -> bool:
        """Whether a folder may hold code: not one that never does, an output or one skipped,
        nor one left out (an environment, a cache) unless `include` may bring a file back."""
        left_out = any(_LEFT_OUT.match(part) for part in folder.split("/"))
        return self._allowed(folder) and (self.includes or not left_out)

    def admits(self, path: str, ignored: bool = False) -> bool:
        if not self._allowed(path):
            return False
        dropped = (
            ignored
            or any(_LEFT_OUT.match(part) for part in path.split("/"))
            or any(spec.match_file(path) for spec in self._dropped)
        )
        return not dropped or (self._include is not None and self._include.match_file(path))

    def _allowed(self, path: str) -> bool:
        parts = path.split("/")
        return not (
            parts[0] in OUTPUTS
            or any(never(part) for part in parts)
            or any(path == folder or path.startswith(f"{folder}/") for folder in self._skip)
        )


def inside(project: Path, folders: tuple[Path, ...]) -> tuple[str, ...]:
    """The folders that lie inside the project (not the project itself), relative to it."""
    root = project.resolve()
    found = [folder.resolve() for folder in folders]
    return tuple(folder.relative_to(root).as_posix() for folder in found if root in folder.parents)


def select(project: Path, rules: Rules, skip: tuple[Path, ...] = ()) -> tuple[CodeFile, ...]:
    """The project's code files, by path; `skip`: folders that are not code wherever they lie
    (a build context being written into the project)."""
    code = Filter(project, rules, inside(project, skip))
    listed = _git_listed(project, code.includes)
    candidates = _walked(project, code) if listed is None else iter(listed)
    chosen = {}
    for path, ignored in candidates:
        if path in chosen or not code.admits(path, ignored):
            continue
        try:
            info = os.lstat(project / path)
        except FileNotFoundError:  # tracked, deleted since
            continue
        if stat.S_ISREG(info.st_mode):  # symbolic links are left out
            chosen[path] = CodeFile(path, info.st_size)
    return tuple(chosen[path] for path in sorted(chosen))


def summary(files: tuple[CodeFile, ...], rules: Rules) -> CodeLayer:
    large = sorted((f for f in files if f.size >= LARGE), key=lambda f: (-f.size, f.path))
    return CodeLayer(rules, len(files), sum(f.size for f in files), tuple(large))


def describe(layer: CodeLayer, shown: int = 10) -> list[str]:
    """`code: N files, SIZE`, then the large files (the first `shown`) and how to keep them out."""
    noun = "file" if layer.files == 1 else "files"
    lines = [f"code: {layer.files} {noun}, {size_text(layer.size)}"]
    if not layer.large:
        return lines
    lines += [f"  {item.path}: {size_text(item.size)}" for item in layer.large[:shown]]
    if len(layer.large) > shown:
        lines.append(f"  and {len(layer.large) - shown} more of {size_text(LARGE)} or more")
    lines.append(
        f"  files of {size_text(LARGE)} or more are usually data, not code: keep them out of the "
        "image by ignoring them in .gitignore or .dockerignore, or listing them in the spec's "
        "`exclude`; `reprobuild run` mounts the project folder at "
        f"{layout.CODE}, so a run still reads them"
    )
    return lines


def size_text(count: int) -> str:
    """Bytes in decimal units, as the engine shows them: `950 B`, `12.3 MB`."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _git_listed(
    folder: Path, with_ignored: bool, prefix: str = ""
) -> list[tuple[str, bool]] | None:
    """What git would commit in `folder` (files of submodules included), and with `with_ignored`
    the untracked files it ignores, each with whether it is ignored; None outside git."""
    listing = ["ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    try:
        found = [(name, False) for name in _names(folder, *listing)]
        if with_ignored:
            ignoring = ["ls-files", "-z", "--others", "--ignored", "--exclude-standard"]
            found += [(name, True) for name in _names(folder, *ignoring)]
    except (OSError, subprocess.CalledProcessError):
        return None
    listed = []
    for name, ignored in found:
        if name.endswith("/"):  # an untracked checkout inside: git would commit no file of it
            continue
        if (folder / name / ".git").exists():  # a submodule: its own files
            inner = _git_listed(folder / name, with_ignored, f"{prefix}{name}/")
            listed += inner or []
        else:
            listed.append((f"{prefix}{name}", ignored))
    return listed


def _names(folder: Path, *args: str) -> list[str]:
    output = subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, check=True
    ).stdout
    return [os.fsdecode(name) for name in output.split(b"\0") if name]


def _walked(project: Path, code: Filter) -> Iterator[tuple[str, bool]]:
    """Outside git: every file in the project, with whether the .gitignore files on its way
    ignore it (as git reads them: a file in an ignored folder stays ignored)."""

    def visit(
        folder: Path, prefix: str, ignores: tuple[tuple[str, GitIgnoreSpec], ...], ignored: bool
    ) -> Iterator[tuple[str, bool]]:
        own = _gitignore_spec(folder / GITIGNORE)
        if own is not None:
            ignores = (*ignores, (prefix, own))
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        for entry in entries:
            path = f"{prefix}{entry.name}"
            if entry.is_symlink():
                continue
            if not entry.is_dir():
                yield path, ignored or _ignored_by(ignores, path)
                continue
            if not code.may_hold(path):
                continue
            hidden = ignored or _ignored_by(ignores, f"{path}/")
            if not hidden or code.includes:  # only `include` can bring back a file in it
                yield from visit(Path(entry.path), f"{path}/", ignores, hidden)

    yield from visit(project, "", (), False)


def _ignored_by(ignores: tuple[tuple[str, GitIgnoreSpec], ...], path: str) -> bool:
    """The last word of the .gitignore files above `path` (a deeper file has it later)."""
    verdict = False
    for prefix, spec in ignores:
        if path.startswith(prefix):
            said = spec.check_file(path[len(prefix) :]).include
            verdict = verdict if said is None else said
    return verdict


def _docker_spec(project: Path) -> GitIgnoreSpec | None:
    """The project's .dockerignore, its lines as gitignore patterns: Docker matches each from the
    context's root (its `*.log` is the root's only; gitignore's would match at any depth)."""
    path = project / DOCKERIGNORE
    if not path.is_file():
        return None
    patterns = {}  # by line number
    for number, line in enumerate(_lines(path), start=1):
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        body = pattern.removeprefix("!").strip().removeprefix("./").strip("/")
        if body:
            patterns[number] = f"{'!' if negated else ''}/{body}"
    try:
        return _spec(list(patterns.values()))
    except ValueError:
        number = next(n for n, pattern in patterns.items() if not _readable(pattern))
        raise RenderError(
            f"{path}, line {number}: {_lines(path)[number - 1].strip()!r} is not a pattern "
            "reprobuild can read (a trailing backslash?): fix or remove that line."
        ) from None


def _gitignore_spec(path: Path) -> GitIgnoreSpec | None:
    """A .gitignore file's patterns; a line git cannot read is skipped, as git skips it."""
    if not path.is_file():
        return None
    lines = _lines(path)
    try:
        return _spec(lines)
    except ValueError:
        return _spec([line for line in lines if _readable(line)])


def _readable(pattern: str) -> bool:
    try:
        _spec([pattern])
    except ValueError:
        return False
    return True


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _spec(patterns: tuple[str, ...] | list[str]) -> GitIgnoreSpec | None:
    if not patterns:
        return None
    from pathspec import GitIgnoreSpec

    return GitIgnoreSpec.from_lines(patterns)
