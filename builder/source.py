"""The project's source state: the git commit it is at and whether its code has changes.

The code is what `codeset` selects for the image's code layer, so a tree is dirty exactly when
a file of that layer differs from HEAD. What reprobuild itself writes into a project (the build
context, the build record, the run records, the published manifest) is not code: it never makes
a tree dirty and is never copied into an image.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from builder import codeset

_HEAD = "# branch.oid "
# Tracked entries whose content is in the code layer: files (plain, executable) and submodules.
_CONTENT_MODES = frozenset({"100644", "100755", "160000"})
_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def git_state(
    project: Path, also_ignored: tuple[Path, ...] = (), rules: codeset.Rules | None = None
) -> tuple[str | None, bool | None]:
    """HEAD's commit and whether a file the code layer holds (by the spec's `rules`, else by
    the other rules alone) differs from it: changed, added, or deleted. Files outside the
    project folder, reprobuild's own outputs and the folders `also_ignored` (where they lie in
    the project) do not count. (None, None) outside a git checkout or before its first commit."""
    skip = codeset.inside(project, also_ignored)
    # The outputs are left out here too, so git does not list a thousand run outputs.
    pathspec = [
        ".",
        *(f":(exclude){name}" for name in codeset.OUTPUTS),
        *(f":(exclude,literal){name}" for name in skip),
    ]
    code = codeset.Filter(project, rules or codeset.Rules(), skip)
    # One git process: `reprobuild run` asks this while the engine starts a container, and on a
    # small machine every process then competes with the engine for the CPU. Paths relative to
    # the project (a user's status.relativePaths=false would make them the checkout's).
    arguments = ["-c", "status.relativePaths=true", "-c", "core.quotePath=false", "status"]
    arguments += ["--porcelain=v2", "--branch", "--no-ahead-behind", "--untracked-files=all"]
    if code.includes:  # `include` may bring an ignored file into the layer
        arguments.append("--ignored=traditional")
    try:
        status = _git(project, *arguments, "--", *pathspec)
    except (OSError, subprocess.CalledProcessError):
        return None, None
    lines = status.splitlines()
    commit = next((line[len(_HEAD) :] for line in lines if line.startswith(_HEAD)), None)
    if commit is None or commit == "(initial)":
        return None, None
    return commit, any(_changes_code(project, line, code) for line in lines)


def _changes_code(project: Path, line: str, code: codeset.Filter) -> bool:
    """Whether one line of `git status --porcelain=v2` is a change to a file of the code layer."""
    kind = line[:1]
    if kind in ("?", "!"):  # untracked, ignored: in the layer as a plain file
        path = _unquote(line[2:])
        return code.admits(path, ignored=kind == "!") and _plain_file(project / path)
    if kind == "1":  # XY sub mH mI mW hH hI path
        fields = line.split(" ", 8)
        return code.admits(_unquote(fields[8])) and _content(fields[3], fields[5])
    if kind == "2":  # XY sub mH mI mW hH hI Xscore path<TAB>origPath
        fields = line.split(" ", 9)
        path, original = (_unquote(part) for part in fields[9].split("\t", 1))
        now = code.admits(path) and _content(fields[5])
        before = code.admits(original) and _content(fields[3])
        return now or before
    if kind == "u":  # unmerged: XY sub m1 m2 m3 mW h1 h2 h3 path
        return code.admits(_unquote(line.split(" ", 10)[10]))
    return False  # a header


def _content(*modes: str) -> bool:
    """Whether an entry of these modes (HEAD's, the worktree's) is content of the layer: a
    symbolic link is left out of it, so a change to one changes nothing there."""
    return any(mode in _CONTENT_MODES for mode in modes)


def _plain_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _unquote(path: str) -> str:
    """A path as git prints it: in quotes with C escapes when it holds unusual characters."""
    if not (path.startswith('"') and path.endswith('"')):
        return path
    raw = path[1:-1].encode("utf-8", "surrogateescape")
    out = bytearray()
    index = 0
    while index < len(raw):
        byte = raw[index]
        if byte != ord("\\"):
            out.append(byte)
            index += 1
            continue
        escaped = chr(raw[index + 1])
        if escaped in "01234567":
            out.append(int(raw[index + 1 : index + 4], 8))
            index += 4
        else:
            out.append(_ESCAPES.get(escaped, ord(escaped)))
            index += 2
    return out.decode("utf-8", "surrogateescape")


def _git(project: Path, *args: str) -> str:
    # Its own session: a Ctrl-C meant for a run's command does not cut its record's git state.
    return subprocess.run(
        ["git", "-C", str(project), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="surrogateescape",
        check=True,
        start_new_session=True,
    ).stdout


def commit_author(project: Path, commit: str) -> str | None:
    """The author's name of `commit` in the project's checkout; None where git cannot say."""
    try:
        name = _git(project, "show", "-s", "--format=%an", commit, "--").strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return name or None
