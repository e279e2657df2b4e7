"""`reprobuild.build.json`: what a build produced, written atomically, read back by later stages."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from builder import source
from builder.errors import ReprobuildError
from builder.files import write_atomic

RECORD_FILE = source.RECORD_FILE
FORMAT = 1


@dataclass(frozen=True)
class LayerRecord:
    diff_id: str
    size: int


@dataclass(frozen=True)
class BuildRecord:
    image: str  # name:tag in the engine
    image_id: str  # sha256 of the config: the config digest
    layers: tuple[LayerRecord, ...]
    base_layers: int
    lock: str
    knowledge_version: str
    reprobuild_version: str
    engine_version: str
    base: str
    manifest_digest: str | None = None
    pushed: str | None = None  # name@sha256:... after --push
    pushed_tag: str | None = None  # name:tag it was pushed under (tags move; digests do not)
    git_commit: str | None = None  # the project's HEAD when it was built (its code is inside)
    git_dirty: bool | None = None
    dependencies: str | None = None  # the image of the Dockerfile's deps stage it was built on
    normalisation: dict[str, Any] = field(default_factory=dict)


class RecordError(ReprobuildError):
    """The build record is missing or unreadable."""


def dumps(record: BuildRecord) -> str:
    document = {"format": FORMAT, **asdict(record)}
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write(project: Path, record: BuildRecord) -> Path:
    path = project / RECORD_FILE
    write_atomic(path, dumps(record))
    return path


def read(project: Path) -> BuildRecord:
    path = project / RECORD_FILE
    try:
        document: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path} does not exist: run `reprobuild build` first.") from None
    except (OSError, ValueError) as error:
        raise RecordError(
            f"{path} is unreadable ({error}); run `reprobuild build` again."
        ) from None
    if document.pop("format", None) != FORMAT:
        raise RecordError(f"{path} has an unknown format; run `reprobuild build` again.")
    try:
        layers = tuple(LayerRecord(**layer) for layer in document.pop("layers"))
        return BuildRecord(layers=layers, **document)
    except (KeyError, TypeError) as error:
        raise RecordError(
            f"{path} is incomplete ({error}); run `reprobuild build` again."
        ) from None


def pushed_build(project: Path, lock_digest: str) -> str | None:
    """The pushed image (name@sha256:...) of this lock's last build, if it was pushed."""
    if not (project / RECORD_FILE).is_file():
        return None
    record = read(project)
    return record.pushed if record.lock == lock_digest else None


@dataclass(frozen=True)
class ImageToRun:
    reference: str  # as the user named it, or the last build's tag
    image_id: str
    pushed: str | None  # the last build's pushed name@sha256:..., for the records


def image_to_run(client: Any, project: Path, chosen: str | BuildRecord) -> ImageToRun:
    """The image a command runs: a reference (pulled if the engine lacks it), or the project's
    last build (its record, read first), from the engine or pulled back by digest from where it
    was pushed."""
    from builder import engine

    if isinstance(chosen, str):
        return ImageToRun(chosen, engine.ensure_image(client, chosen), None)
    record = chosen
    found = engine.image_id(client, record.image_id)
    if found is None and record.pushed:
        found = engine.ensure_image(client, record.pushed)
    if found is None:
        raise RecordError(
            f"the last build's image {record.image} ({record.image_id}) is no longer in the "
            "engine and was not pushed: run `reprobuild build` again."
        )
    if found != record.image_id:
        raise RecordError(
            f"{record.pushed} is {found} in the registry, but {project / RECORD_FILE} recorded "
            f"{record.image_id}: the record was edited or belongs to another build. Run "
            "`reprobuild build` again."
        )
    return ImageToRun(record.image, record.image_id, record.pushed)
