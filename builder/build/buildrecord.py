"""`reprobuild.build.json`: what a build produced, written atomically, read back by later stages."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from builder import layout
from builder.build import recordfile
from builder.build.recordfile import ImageToRun
from builder.errors import RecordError
from builder.files import write_output
from builder.reference import pinned_reference
from builder.shapes import typed

if TYPE_CHECKING:
    from builder.engine.sdk import Engine


@dataclass(frozen=True)
class LayerRecord:
    diff_id: str
    size: int


class Normalisation(TypedDict, total=False):
    """What normalising the build did (empty in records that predate it)."""

    rewritten: list[str]  # the noise found in layers that had to be rewritten, first few
    scanned_bytes: int  # bytes of layers read back from the engine to check them


@dataclass(frozen=True)
class PlatformImage:
    """An image of another platform built from the same lock in the same build."""

    platform: str
    image: str
    image_id: str
    manifest_digest: str | None = None  # after --push
    pushed: str | None = None
    dependencies: str | None = None  # the deps image it was built on


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
    normalisation: Normalisation = field(default_factory=Normalisation)
    platform: str = "linux/amd64"  # records from before platforms were amd64's
    other_platforms: tuple[PlatformImage, ...] = ()
    pushed_index: str | None = None  # name@sha256:... of the OCI index of every platform pushed

    @property
    def platforms(self) -> tuple[str, ...]:
        return (self.platform, *(other.platform for other in self.other_platforms))


def dumps(record: BuildRecord) -> str:
    document = {"format": recordfile.FORMAT, **asdict(record)}
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write(project: Path, record: BuildRecord) -> Path:
    path = project / layout.RECORD_FILE
    write_output(path, dumps(record))
    return path


def read(project: Path) -> BuildRecord:
    document = recordfile.load(project)
    try:
        record: BuildRecord = typed(document, BuildRecord)
    except ValueError as misfit:
        path = recordfile.path_in(project)
        raise RecordError(f"{path} {misfit}; run `reprobuild build` again.") from None
    return record


def pushed_build(project: Path, lock_digest: str, platform: str | None = None) -> str | None:
    """The pushed image (name@sha256:...) of this lock's last build for `platform` (default: the
    record's own), if it was pushed."""
    if not (project / layout.RECORD_FILE).is_file():
        return None
    record = read(project)
    if record.lock != lock_digest:
        return None
    if platform is None or platform == record.platform:
        return record.pushed
    return next((o.pushed for o in record.other_platforms if o.platform == platform), None)


def unpinned_push(record: BuildRecord, project: Path) -> str | None:
    """Why the record's pushed image cannot be pulled by digest (the record was edited); None
    when it can, or when the build was never pushed."""
    if record.pushed is None or pinned_reference(record.pushed) is not None:
        return None
    return (
        f"{project / layout.RECORD_FILE} names the pushed image {record.pushed!r}, not "
        "name@sha256:<64 hex>: the record was edited. Run `reprobuild build --push "
        "REGISTRY/NAME:TAG` again."
    )


def image_to_run(engine: Engine, project: Path, chosen: str | BuildRecord) -> ImageToRun:
    """The image a command runs: a reference (pulled if the engine lacks it), or the project's
    last build (its record, read first), from the engine or pulled back by digest from where it
    was pushed."""

    if isinstance(chosen, str):
        return ImageToRun(chosen, engine.ensure_image(chosen), None)
    return recordfile.recorded_image(
        project,
        {"image": chosen.image, "image_id": chosen.image_id, "pushed": chosen.pushed},
        engine.image_id,
        engine.ensure_image,
    )
