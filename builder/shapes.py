"""A document read from a file (JSON or TOML) checked against the types its record declares.

Records a user or a registry hands over (a lock, a build or run record, a smoke report) are read
into dataclasses and TypedDicts; a document of another shape would otherwise fail later, far
from the file, as a KeyError or TypeError. `typed` gives the record, or a ValueError whose
message is the clause that names the key, e.g. 'has layers[0].size = "x", not an integer', for
the caller to put after the file's name. Imports typing only when called: the build record is
read on `reprobuild run`'s way to the start.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # typing's own flag, without importing typing on `run`'s way to the start
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Dialect:
    """How a format writes what it lacks: TOML has no null, so an absent key reads as None where
    None fits, and a table is a "table"; JSON's absent keys are missing ones, and a table is an
    "object". `loose_keys`: a TypedDict's keys are checked where present, none required."""

    __slots__ = ("absent_is_none", "hints", "loose_keys", "table")

    def __init__(
        self,
        table: str,
        *,
        absent_is_none: bool = False,
        loose_keys: bool = False,
        hints: Callable[[Any], dict[str, Any]] | None = None,
    ) -> None:
        self.table = table
        self.absent_is_none = absent_is_none
        self.loose_keys = loose_keys
        self.hints = hints or _type_hints


_HINTS: dict[Any, dict[str, Any]] = {}


def _type_hints(kind: Any) -> dict[str, Any]:
    import typing

    if kind not in _HINTS:
        _HINTS[kind] = typing.get_type_hints(kind)
    return _HINTS[kind]


JSON = Dialect("an object")


def typed(value: Any, hint: Any, where: str = "", dialect: Dialect = JSON) -> Any:
    """`value` as the type `hint` declares: a dataclass from an object (absent keys take their
    defaults), a tuple from an array, a TypedDict as it is (its keys checked, unknown ones
    kept); a ValueError naming the first key that is not one."""
    import dataclasses
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or (origin is typing.Literal and value in args):
        return value
    if origin in (typing.Union, types.UnionType):
        return _one_of(value, args, where, dialect)
    if (dataclasses.is_dataclass(hint) or typing.is_typeddict(hint)) and isinstance(value, dict):
        return _record(value, hint, where, dialect)
    if origin in (list, tuple) and isinstance(value, list):
        return origin(
            typed(item, args[0], f"{where}[{at}]", dialect) for at, item in enumerate(value)
        )
    if origin is dict and isinstance(value, dict):
        return {key: typed(item, args[1], at(where, key), dialect) for key, item in value.items()}
    if type(value) is hint or (hint is float and type(value) is int):
        return value
    raise ValueError(f"has {where} = {shown(value)}, not {_kind(hint, dialect)}")


def _one_of(value: Any, hints: tuple[Any, ...], where: str, dialect: Dialect) -> Any:
    misfits = []
    for hint in hints:
        try:
            return typed(value, hint, where, dialect)
        except ValueError as misfit:
            misfits.append(misfit)
    # A table of the right kind with a wrong key inside: name that key.
    deeper = [misfit for misfit in misfits if not str(misfit).startswith(f"has {where} = ")]
    named = [hint for hint in hints if not (dialect.absent_is_none and hint is type(None))]
    kinds = " or ".join(_kind(hint, dialect) for hint in named)
    raise deeper[0] if deeper else ValueError(f"has {where} = {shown(value)}, not {kinds}")


def _record(document: dict[str, Any], hint: Any, where: str, dialect: Dialect) -> Any:
    import dataclasses
    import typing

    hints = dialect.hints(hint)
    if typing.is_typeddict(hint):
        missing = [] if dialect.loose_keys else sorted(hint.__required_keys__ - set(document))
        if missing:
            raise ValueError(f"lacks {at(where, missing[0])}")
        return {
            key: typed(value, hints[key], at(where, key), dialect) if key in hints else value
            for key, value in document.items()
        }
    unknown = sorted(set(document) - set(hints))
    if unknown:
        raise ValueError(f"has the unknown key {at(where, unknown[0])}")
    values = {
        key: typed(value, hints[key], at(where, key), dialect) for key, value in document.items()
    }
    for field in dataclasses.fields(hint):
        required = (
            dataclasses.MISSING is field.default and dataclasses.MISSING is field.default_factory
        )
        if field.name in document or not required:
            continue
        if not (dialect.absent_is_none and type(None) in typing.get_args(hints[field.name])):
            raise ValueError(f"lacks {at(where, field.name)}")
        values[field.name] = None
    return hint(**values)


def shown(value: object) -> str:
    """A value in a message: a scalar as JSON writes it, cut short; a container as [...] or
    {...} (its parts may nest deeper than a message should go)."""
    containers: dict[type, str] = {list: "[...]", dict: "{...}"}
    text = containers.get(type(value)) or json.dumps(value, default=str)
    return text if len(text) <= 40 else f"{text[:37]}..."


def at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(hint: Any, dialect: Dialect) -> str:
    import typing

    if typing.get_origin(hint) in (list, tuple):
        return "an array"
    if typing.get_origin(hint) is typing.Literal:
        return " or ".join(json.dumps(arg) for arg in typing.get_args(hint))
    names = {str: "a string", int: "an integer", bool: "a boolean", float: "a number"}
    return names.get(hint, "null" if hint is type(None) else dialect.table)
