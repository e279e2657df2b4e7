"""`reprobuild.build.json`: what a build produced, written atomically, read back by later stages."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from builder.build import BuildRecord, LayerRecord
from builder.errors import ReprobuildError
from builder.files import write_atomic

RECORD_FILE = "reprobuild.build.json"
FORMAT = 1


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
