"""reprobuild.build.json read as a document, and the image a command runs by it.

The typed record lives in `builder.buildrecord`; this module needs only json and os.path, so
that `reprobuild run` finds its image without importing the record's types (or pathlib) first.
"""

from __future__ import annotations

import json
import os

from builder.errors import RecordError
from builder.layout import RECORD_FILE
from builder.shapes import shown

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
                f"{path_in(project)} has {name} = {shown(value)}, not {wanted}; run `reprobuild "
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
