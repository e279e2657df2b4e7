"""Find and read the spec table: `reprobuild.toml`, or `[tool.reprobuild]` in `pyproject.toml`.

Kept apart from validation (spec/check.py) so commands that only need the table as written (the spec
hash of `render`) start without the validator's imports.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from builder.errors import SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

SPEC_FILE = "reprobuild.toml"
PYPROJECT = "pyproject.toml"


def has_spec(project: Path) -> bool:
    """A reprobuild.toml, or a pyproject.toml with [tool.reprobuild] (or unreadable: say why)."""
    if (project / SPEC_FILE).is_file():
        return True
    pyproject = project / PYPROJECT
    if not pyproject.is_file():
        return False
    try:
        return _embedded_table(pyproject) is not None
    except SpecError:
        return True


def locate(project: Path) -> tuple[Path, dict[str, Any], list[str]]:
    """Find the spec table: reprobuild.toml wins over [tool.reprobuild], with a note."""
    own = project / SPEC_FILE
    pyproject = project / PYPROJECT
    notes: list[str] = []
    embedded = _embedded_table(pyproject) if pyproject.is_file() else None
    if own.is_file():
        if embedded is not None:
            notes.append(
                f"both {SPEC_FILE} and [tool.reprobuild] in {PYPROJECT} exist; using {SPEC_FILE}."
            )
        return own, _read_toml(own), notes
    if embedded is not None:
        if not isinstance(embedded, dict):
            raise SpecError(str(pyproject), ["[tool.reprobuild] must be a table."])
        return pyproject, embedded, notes
    raise SpecError(
        str(project),
        [
            f"no spec found: create {SPEC_FILE} in {project} (see images/example/{SPEC_FILE}) "
            f"or add a [tool.reprobuild] table to {PYPROJECT}."
        ],
    )


def _embedded_table(pyproject: Path) -> Any:
    tool = _read_toml(pyproject).get("tool")
    return tool.get("reprobuild") if isinstance(tool, dict) else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        document: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        return document
    except tomllib.TOMLDecodeError as error:
        raise SpecError(str(path), [f"not valid TOML: {error}."]) from None
    except RecursionError:
        raise SpecError(str(path), ["nests arrays or tables too deeply to be read."]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(str(path), [f"cannot be read: {error}."]) from None
