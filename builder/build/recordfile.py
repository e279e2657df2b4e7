"""reprobuild.build.json read as a document, and the image a command runs by it.

The typed record lives in `builder.buildrecord`; this module needs only json and os.path, so
that `reprobuild run` finds its image without importing the record's types (or pathlib) first.
"""

from __future__ import annotations

import json
import os

from builder.errors import RecordError
from builder.layout import RECORD_FILE

TYPE_CHECKING = False  # typing's own flag, without importing typing on `run`'s way to the start
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Folder = str | os.PathLike[str]

FORMAT = 1


def path_in(project: Folder) -> str:
    return os.path.normpath(os.path.join(project, RECORD_FILE))


def load(project: Folder) -> dict[str, Any]:
    """The record's fields (its format checked and removed); RecordError naming the fix."""
    path = path_in(project)
    try:
        with open(path, encoding="utf-8") as handle:
            document: dict[str, Any] = json.load(handle)
    except FileNotFoundError:
        raise RecordError(f"{path} does not exist: run `reprobuild build` first.") from None
    except (OSError, ValueError, RecursionError) as error:
        raise RecordError(
            f"{path} is unreadable ({error}); run `reprobuild build` again."
        ) from None
    if not isinstance(document, dict) or document.pop("format", None) != FORMAT:
        raise RecordError(f"{path} has an unknown format; run `reprobuild build` again.")
    return document


def incomplete(project: Folder, error: Exception) -> RecordError:
    return RecordError(f"{path_in(project)} is incomplete ({error}); run `reprobuild build` again.")


_HINTS: dict[type, dict[str, Any]] = {}


def typed(value: Any, hint: Any, where: str = "") -> Any:
    """`value` from a record's JSON as the type `hint` declares: a dataclass from an object
    (absent keys take their defaults), a tuple from an array, a TypedDict as it is (its keys
    checked, unknown ones kept). A value that is not one is a ValueError whose message is the
    clause that names it (`where` is its key), e.g. 'has layers[0].size = "x", not an integer'.
    The build and run records and the smoke report are read through it, so that one that was
    edited never reaches the stages as a wrong type. typing is imported here, not above: this
    module is on `run`'s way to the start."""
    import dataclasses
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or (origin is typing.Literal and value in args):
        return value
    if origin in (typing.Union, types.UnionType):
        return _one_of(value, args, where)
    if (dataclasses.is_dataclass(hint) or typing.is_typeddict(hint)) and isinstance(value, dict):
        return _record(value, hint, where)
    if origin in (list, tuple) and isinstance(value, list):
        return origin(typed(item, args[0], f"{where}[{at}]") for at, item in enumerate(value))
    if origin is dict and isinstance(value, dict):
        return {key: typed(item, args[1], _at(where, key)) for key, item in value.items()}
    if type(value) is hint or (hint is float and type(value) is int):
        return value
    raise ValueError(f"has {where} = {_shown(value)}, not {_kind(hint)}")


def _one_of(value: Any, hints: tuple[Any, ...], where: str) -> Any:
    misfits = []
    for hint in hints:
        try:
            return typed(value, hint, where)
        except ValueError as misfit:
            misfits.append(misfit)
    # An object of the right kind with a wrong key inside: name that key.
    deeper = [misfit for misfit in misfits if not str(misfit).startswith(f"has {where} = ")]
    kinds = " or ".join(_kind(hint) for hint in hints)
    raise deeper[0] if deeper else ValueError(f"has {where} = {_shown(value)}, not {kinds}")


def _record(document: dict[str, Any], hint: Any, where: str) -> Any:
    import dataclasses
    import typing

    if hint not in _HINTS:
        _HINTS[hint] = typing.get_type_hints(hint)
    hints = _HINTS[hint]
    if typing.is_typeddict(hint):
        missing = sorted(hint.__required_keys__ - set(document))
        if missing:
            raise ValueError(f"lacks {_at(where, missing[0])}")
        return {
            key: typed(value, hints[key], _at(where, key)) if key in hints else value
            for key, value in document.items()
        }
    unknown = sorted(set(document) - set(hints))
    if unknown:
        raise ValueError(f"has the unknown key {_at(where, unknown[0])}")
    for field in dataclasses.fields(hint):
        required = (
            dataclasses.MISSING is field.default and dataclasses.MISSING is field.default_factory
        )
        if required and field.name not in document:
            raise ValueError(f"lacks {_at(where, field.name)}")
    return hint(
        **{key: typed(value, hints[key], _at(where, key)) for key, value in document.items()}
    )


def _shown(value: object) -> str:
    """A value in a message: a scalar as JSON writes it, cut short; a container as [...] or
    {...} (its parts may nest deeper than a message should go)."""
    containers: dict[type, str] = {list: "[...]", dict: "{...}"}
    shown = containers.get(type(value)) or json.dumps(value, default=str)
    return shown if len(shown) <= 40 else f"{shown[:37]}..."


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(hint: Any) -> str:
    import typing

    if typing.get_origin(hint) in (list, tuple):
        return "an array"
    if typing.get_origin(hint) is typing.Literal:
        return " or ".join(json.dumps(arg) for arg in typing.get_args(hint))
    names = {str: "a string", int: "an integer", bool: "a boolean", float: "a number"}
    return names.get(hint, "null" if hint is type(None) else "an object")


class ImageToRun:
    """The image a command runs: as the user named it (or the last build's tag), its ID, and
    the last build's pushed name@sha256:..., for the records."""

    __slots__ = ("image_id", "pushed", "reference")
    reference: str
    image_id: str
    pushed: str | None

    def __init__(self, reference: str, image_id: str, pushed: str | None) -> None:
        object.__setattr__(self, "reference", reference)
        object.__setattr__(self, "image_id", image_id)
        object.__setattr__(self, "pushed", pushed)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"an ImageToRun is not changed once made ({name})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageToRun) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"ImageToRun{self._fields()!r}"

    def _fields(self) -> tuple[str, str, str | None]:
        return self.reference, self.image_id, self.pushed


def recorded_image(
    project: Folder,
    document: dict[str, Any],
    find: Callable[[str], str | None],
    fetch: Callable[[str], str],
) -> ImageToRun:
    """The last build's image: in the engine (`find` by ID), or pulled back by digest from where
    it was pushed (`fetch`), which must give the recorded ID."""
    try:
        image, image_id, pushed = document["image"], document["image_id"], document.get("pushed")
    except KeyError as error:
        raise incomplete(project, error) from None
    for name, value in (("image", image), ("image_id", image_id), ("pushed", pushed)):
        if not isinstance(value, str) and not (name == "pushed" and value is None):
            wanted = "a string or null" if name == "pushed" else "a string"
            raise RecordError(
                f"{path_in(project)} has {name} = {_shown(value)}, not {wanted}; run `reprobuild "
                "build` again."
            )
    found = find(image_id)
    if found is None and pushed:
        found = fetch(pushed)
    if found is None:
        raise RecordError(
            f"the last build's image {image} ({image_id}) is no longer in the engine and was not "
            "pushed: run `reprobuild build` again."
        )
    if found != image_id:
        raise RecordError(
            f"{pushed} is {found} in the registry, but {path_in(project)} recorded "
            f"{image_id}: the record was edited or belongs to another build. Run "
            "`reprobuild build` again."
        )
    return ImageToRun(image, image_id, pushed)
