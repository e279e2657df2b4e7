"""One error module: every error class lives in builder/errors.py, every exit code the command
can return is in its table, and the README's table is that table."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from builder import errors
from builder.errors import EXIT_CODES, ReprobuildError

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "builder"
ENTRY_POINTS = [PACKAGE / "launch.py", *sorted((PACKAGE / "cli").glob("*.py"))]


def builder_modules() -> list[str]:
    """Every module but the in-image payload (which imports torch, and nothing of builder)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] in ("__init__", "__main__") or parts[1] == "smoke":
            continue
        names.append(".".join(parts))
    return names


def subclasses(base: type[ReprobuildError]) -> list[type[ReprobuildError]]:
    found: list[type[ReprobuildError]] = []
    for child in base.__subclasses__():
        found += [child, *subclasses(child)]
    return found


def test_every_error_class_is_defined_in_errors_py() -> None:
    for name in builder_modules():
        importlib.import_module(name)
    elsewhere = [
        f"{kind.__module__}.{kind.__qualname__}"
        for kind in subclasses(ReprobuildError)
        if kind.__module__ != "builder.errors"
    ]
    assert elsewhere == []


# What an exception class derives from: Python's own, or any class errors.py defines.
EXCEPTION_BASES = {"Exception", "BaseException", "ValueError", "OSError", "RuntimeError"}
EXCEPTION_BASES |= {name for name, value in vars(errors).items() if isinstance(value, type)}


def exception_classes(source: str) -> list[str]:
    """Classes (at any depth) deriving from an exception class, by the last part of each base."""
    return [
        node.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ClassDef)
        and any(ast.unparse(base).rsplit(".", 1)[-1] in EXCEPTION_BASES for base in node.bases)
    ]


def test_no_module_defines_an_exception_of_its_own() -> None:
    """The in-image payload is the exception: it imports nothing of builder."""
    found = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "errors.py" and "smoke" not in path.relative_to(PACKAGE).parts
        for name in exception_classes(path.read_text())
    ]
    assert found == []
    nested = "def f():\n    class X(BuildFailed):\n        pass\nclass Y(errors.SifError): ..."
    assert sorted(exception_classes(nested)) == ["X", "Y"]


def test_every_error_exits_with_a_code_of_the_table() -> None:
    kinds: list[type[ReprobuildError]] = [ReprobuildError, *subclasses(ReprobuildError)]
    codes = {kind.__name__: kind.exit_code for kind in kinds}
    assert {name: code for name, code in codes.items() if code not in EXIT_CODES} == {}
    assert (codes["SpecError"], codes["ResolutionError"], codes["MissingImage"]) == (2, 3, 2)


def test_the_command_exits_only_with_named_codes_of_the_table() -> None:
    """No bare number reaches sys.exit: it is a constant of the table, an error's own code, the
    smoke payload's code or (for `run`) the command's."""
    named = {"FAILURE": errors.FAILURE, "USAGE": errors.USAGE, "INTERRUPTED": errors.INTERRUPTED}
    assert set(named.values()) <= set(EXIT_CODES) and errors.NO_TORCH_BUILD in EXIT_CODES
    allowed = {*named, "error.exit_code", "result.exit_code", "code"}
    allowed.add("run_report.run_and_report(plan)")
    exits = []
    for path in ENTRY_POINTS:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("sys.exit", "os._exit"):
                exits.append((path.name, ast.unparse(node.args[0])))
    assert exits and [(name, arg) for name, arg in exits if arg not in allowed] == []


def test_the_smoke_payload_exits_with_the_tables_smoke_codes() -> None:
    # The payload runs inside the image and imports nothing of builder: its own constants.
    from builder.smoke import runner

    payload = (runner.PASS, runner.FAIL, runner.UNPROVEN, runner.PRECONDITION)
    assert payload == (0, 1, 3, 4)
    assert all("smoke" in EXIT_CODES[code] for code in payload)


def test_the_readme_shows_the_table() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", readme, re.MULTILINE))
    assert {int(code): meaning for code, meaning in rows.items()} == EXIT_CODES
