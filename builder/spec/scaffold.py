"""`reprobuild init`: write the spec that `spec.discover` inferred, as commented TOML, into
`reprobuild.toml` or as `[tool.reprobuild]` at the end of `pyproject.toml` (whose other bytes stay
as they were), and say what was inferred.

Nothing is written over an existing spec without `force`; the text is validated as `load_spec`
would read it before it is written, so a written spec always loads.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from builder.errors import InitError
from builder.files import write_output
from builder.knowledge import AMD64, ARM64, Knowledge
from builder.spec.check import parse
from builder.spec.discover import Findings, InitRequest, TargetFinding, Value, discover
from builder.spec.file import PYPROJECT, SPEC_FILE
from builder.spec.model import Spec
from builder.spec.sources import Listed

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

WIDTH = 100
TABLE = "tool.reprobuild"
NEXT_STEPS = ("reprobuild resolve --explain", "reprobuild lock")
_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\s\"']+?)\s*\]\]?\s*(#.*)?$")


@dataclass(frozen=True)
class InitOutcome:
    findings: Findings
    path: Path
    text: str  # the spec as written (with --pyproject: its [tool.reprobuild] table)
    written: bool
    summary: tuple[str, ...]


def init_project(
    project: Path,
    request: InitRequest,
    knowledge: Knowledge,
    *,
    pyproject: bool = False,
    force: bool = False,
    dry_run: bool = False,
) -> InitOutcome:
    """Infer the project's spec from its files and write it (unless `dry_run`)."""
    _refuse_without_effect(project, pyproject)
    path = project / (PYPROJECT if pyproject else SPEC_FILE)
    if not dry_run and not force:
        _refuse_to_overwrite(project, pyproject)
    findings = discover(project, request, knowledge)
    text = render(findings, embedded=pyproject)
    document = _spliced(path, text) if pyproject else text
    spec = _validate(document, path, knowledge, embedded=pyproject)
    if not dry_run:
        write_output(path, document)
    told = summary(findings, path, not dry_run, _platform_summary(spec, knowledge))
    return InitOutcome(findings, path, text, not dry_run, told)


def _refuse_without_effect(project: Path, pyproject: bool) -> None:
    """A spec that would land nowhere, or be overridden: no flag makes it worth writing."""
    if not project.is_dir():
        state = "is not a folder" if project.exists() else "does not exist"
        raise InitError(
            f"the project folder {project} {state}; run `reprobuild init` in the repository's "
            "folder, or name that folder with `reprobuild -C FOLDER init`."
        )
    own = project / SPEC_FILE
    if pyproject and own.exists():
        raise InitError(
            f"{own} exists and wins over a [tool.reprobuild] table, so the table would have no "
            f"effect (--force does not change that); remove {own} first, or leave out "
            "--pyproject (with --force to replace it)."
        )


def _refuse_to_overwrite(project: Path, pyproject: bool) -> None:
    ways = (
        "`reprobuild init --force` replaces it, `reprobuild init --dry-run` prints what it "
        "would write."
    )
    own = project / SPEC_FILE
    if not pyproject and own.exists():
        raise InitError(f"{own} already exists; {ways}")
    if _has_table(project / PYPROJECT):
        flag = "--pyproject --force" if pyproject else "--force"
        raise InitError(
            f"{project / PYPROJECT} already has a [tool.reprobuild] spec; `reprobuild init "
            f"{flag}` replaces it{'' if pyproject else ' with a reprobuild.toml that wins over it'}"
            ", `reprobuild init --dry-run` prints what it would write."
        )


def _has_table(path: Path) -> bool:
    if not path.is_file():
        return False
    from builder.spec.sources import read_pyproject

    return read_pyproject(path.parent).has_reprobuild


def _validate(document: str, path: Path, knowledge: Knowledge, *, embedded: bool) -> Spec:
    try:
        table = tomllib.loads(document)
    except tomllib.TOMLDecodeError as error:
        if not embedded:
            raise  # init's own TOML: a bug, not the user's to fix
        raise InitError(
            f"{path} declares its tool table inline (tool = {{...}}), so a [tool.reprobuild] "
            f"table cannot be appended to it ({error}); leave out --pyproject "
            "to write reprobuild.toml instead."
        ) from None
    if embedded:
        table = table["tool"]["reprobuild"]
    return parse(table, path, knowledge)


# The pyproject.toml table.


def _spliced(path: Path, table: str) -> str:
    """pyproject.toml with `table` in place of its [tool.reprobuild] lines, or appended."""
    if not path.is_file():
        raise InitError(
            f"--pyproject adds [tool.reprobuild] to {path}, which does not exist; leave out "
            "--pyproject to write reprobuild.toml."
        )
    original = path.read_text(encoding="utf-8")
    lines = original.splitlines(keepends=True)
    span = table_span(lines)
    if span is None:
        if _has_table(path):
            raise InitError(
                f"{path} holds [tool.reprobuild] as dotted keys or an inline table, which init "
                "cannot replace line by line; remove it, then run `reprobuild init --pyproject`."
            )
        separator = "" if not original or original.endswith("\n\n") else "\n"
        if original and not original.endswith("\n"):
            separator = "\n\n"
        return original + separator + table
    start, end = span
    tail = "".join(lines[end:]).lstrip("\n")
    return "".join(lines[:start]) + table + ("\n" if tail else "") + tail


def table_span(lines: list[str]) -> tuple[int, int] | None:
    """The lines of [tool.reprobuild] and its sub-tables: from its header to the next other
    table's header, less the comment lines right above that header (they are the next table's)."""
    start = next((i for i, line in enumerate(lines) if _table_name(line) == TABLE), None)
    if start is None:
        return None
    end = len(lines)
    for index in range(start + 1, len(lines)):
        name = _table_name(lines[index])
        if name is not None and name != TABLE and not name.startswith(f"{TABLE}."):
            end = index
            while end - 1 > start and lines[end - 1].lstrip().startswith("#"):
                end -= 1
            break
    while end - 1 > start and not lines[end - 1].strip():
        end -= 1
    return start, end


def _table_name(line: str) -> str | None:
    match = _HEADER.match(line)
    if match is None:
        return None
    return ".".join(part.strip().strip("\"'") for part in match.group(1).split("."))


# The commented TOML.


def render(findings: Findings, *, embedded: bool = False) -> str:
    """The spec as TOML, each value under a comment naming where it came from."""
    lines: list[str] = []
    if embedded:
        lines.append(f"[{TABLE}]")
    lines += _comment(
        "The reprobuild spec, written by `reprobuild init` from the files this repository holds; "
        "the comment above each value says where it came from. docs/spec.md describes every key."
    )
    lines.append("")
    lines += _value("name", findings.name)
    lines += _value("python", findings.python)
    lines += _value("torch", findings.torch)
    if findings.cuda is not None:
        lines += _value("cuda", findings.cuda)
    if findings.cpu_only is not None:
        lines += [*_comment(findings.cpu_only.why), "cpu_only = true"]
    lines += _packages(findings)
    lines += _asides(findings)
    lines += _conda_only(findings)
    if findings.cpu_only is None:  # a CPU image runs on no GPU: no target to name
        lines.append("")
        lines += _target(findings.target, f"{TABLE}.target" if embedded else "target")
    return "\n".join(lines) + "\n"


def _comment(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(
        text,
        width=WIDTH,
        initial_indent=f"{indent}# ",
        subsequent_indent=f"{indent}# ",
        break_on_hyphens=False,
        break_long_words=False,
    )


def _quote(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)


def _value(key: str, value: Value) -> list[str]:
    return [*_comment(value.why), f"{key} = {_quote(value.text)}"]


def _packages(findings: Findings) -> list[str]:
    source = findings.packages
    if findings.requirements is not None:
        files = source.files
        included = f" (and {', '.join(files[1:])}, which it includes)" if len(files) > 1 else ""
        return [
            *_comment(
                f"the packages of {findings.requirements}{included}, which the lock reads as "
                "written; it pins torch with the `torch` key above, which admits what that "
                "file's torch line admits"
            ),
            f"requirements = {_quote(findings.requirements)}",
        ]
    listed = findings.package_lines
    if not listed:
        return [
            *_comment(f"no packages besides torch ({source.describe}); list them so:"),
            '# packages = ["numpy==2.1.3"]',
        ]
    return [
        *_comment(f"from {source.describe}; torch's version is the `torch` key above"),
        "packages = [",
        *(f"    {_quote(item.text)},  # {item.origin}" for item in listed),
        "]",
    ]


def _asides(findings: Findings) -> list[str]:
    asides = findings.packages.asides
    if not asides:
        return []
    heading = (
        f"Lines of {findings.requirements} that are no requirement, which the lock reads as "
        "written:"
        if findings.requirements is not None
        else "Lines left out of packages above (no requirement the lock can read):"
    )
    return [
        "",
        *_comment(heading),
        *(f"#   {aside.origin}: {aside.text} ({aside.reason})" for aside in asides),
    ]


def _conda_only(findings: Findings) -> list[str]:
    if not findings.conda_only:
        return []
    return [
        "",
        *_comment(
            "conda packages this image will not have: add those on PyPI to packages and the "
            "Debian ones to system_packages"
        ),
        *(f"#   {package.written} ({package.origin})" for package in findings.conda_only),
    ]


def _target(target: TargetFinding | None, table: str) -> list[str]:
    if target is None:
        return [
            *_comment(
                f"[{table}]: where the image must run. Without it the image runs on any driver "
                "at or above its torch build's driver floor, which `reprobuild resolve` names. "
                "Uncomment and edit it, or write it with `reprobuild init --force --gpus "
                "A100,H100 --driver 535.104.05` (`--host` on the GPU machine reads both)."
            ),
            f"# [{table}]",
            '# driver = "535.104.05"',
            '# gpus = ["A100", "H100"]',
        ]
    lines = [*_comment(f"[{table}]: {target.why}"), f"[{table}]"]
    if target.driver is not None:
        lines += _value("driver", target.driver)
    if target.gpus:
        lines += [
            "gpus = [",
            *(f"    {_quote(gpu.text)},  # {gpu.why}" for gpu in target.gpus),
            "]",
        ]
    return lines


# What init tells the user.


def summary(
    findings: Findings, path: Path, written: bool, platform: str | None = None
) -> tuple[str, ...]:
    """What was inferred, one line each, and the commands to run next; `platform` where the
    image is not linux/amd64."""
    lines = [
        f"{'wrote' if written else 'would write'} {path}",
        _row("read", ", ".join(findings.read) or "no dependency file"),
        _row("name", _with_why(findings.name)),
        _row("torch", _with_why(findings.torch)),
        _row("python", _with_why(findings.python)),
        _row("cuda", _cuda_summary(findings)),
        _row("packages", _package_summary(findings)),
        _row("companions", _listed(findings.family) or "none"),
    ]
    if findings.conda_only:
        names = ", ".join(package.name for package in findings.conda_only)
        lines.append(_row("conda-only", f"{names} (not in the image; see the spec's comment)"))
    if findings.packages.asides:
        lines.append(
            _row(
                "not a package",
                "; ".join(f"{aside.text} ({aside.origin})" for aside in findings.packages.asides),
            )
        )
    if findings.unused:
        lines.append(_row("not read", ", ".join(_unused(file) for file in findings.unused)))
    lines.append(_row("target", _target_summary(findings.target)))
    if platform is not None:
        lines.append(_row("platform", platform))
    lines.append(f"next: {NEXT_STEPS[0]}, then {NEXT_STEPS[1]}")
    return tuple(lines)


def _platform_summary(spec: Spec, knowledge: Knowledge) -> str | None:
    """linux/arm64 where a Grace GPU implies it (init chose torch and Python among linux/amd64
    builds), with a warning when no build of its kind for linux/arm64 matches the torch (a CUDA
    build only where its GPU architectures are known: resolve promises no other to a GPU)."""
    if spec.platforms == (AMD64,):
        return None
    text = f"{ARM64} (a target GPU is a Grace superchip, whose CPU is Arm)"
    kind = [
        b
        for b in knowledge.builds_on(ARM64)
        if b.is_cpu == spec.cpu_only and (b.is_cpu or b.archs is not None)
    ]
    if any(spec.torch.contains(build.torch) for build in kind):
        return text
    name = "CPU build" if spec.cpu_only else "CUDA build with known GPU kernels"
    if not kind:
        return f"{text}; warning: the knowledge base has no {name} for {ARM64}"
    oldest = min(kind, key=lambda build: build.torch)
    return (
        f"{text}; warning: torch {spec.torch_text} has no {name} for {ARM64}, so "
        f"`reprobuild resolve` refuses it: torch {oldest.torch} ({oldest.label}) is the first "
        f"release with one"
    )


def _row(label: str, text: str) -> str:
    return f"  {label + ':':<14} {text}"


def _with_why(value: Value) -> str:
    return f"{value.text} ({value.why})"


def _cuda_summary(findings: Findings) -> str:
    if findings.cpu_only is not None:
        return f"none: cpu_only = true ({findings.cpu_only.why})"
    return _with_why(findings.cuda) if findings.cuda else "auto"


def _listed(items: tuple[Listed, ...]) -> str:
    return ", ".join(f"{item.text} ({item.origin})" for item in items)


def _package_summary(findings: Findings) -> str:
    if findings.requirements is not None:
        return f"requirements = {findings.requirements!r}, read by the lock as written"
    count = len(findings.package_lines)
    return f"{count} from {findings.packages.describe}" if count else findings.packages.describe


def _unused(file: str) -> str:
    stem = Path(file).stem
    group = stem if file.startswith("requirements/") else stem[len("requirements") + 1 :]
    return f"{file} (--group {group} adds it)" if group else file


def _target_summary(target: TargetFinding | None) -> str:
    if target is None:
        return "none: the image runs on any driver at or above its torch build's floor"
    parts = [gpu.text for gpu in target.gpus]
    if target.driver is not None:
        parts.append(f"driver >= {target.driver.text}")
    return f"{', '.join(parts)} ({target.why})"
