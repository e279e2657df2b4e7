"""The engine's images as typed records: what its inspect says about each, read once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# RFC 3339 as the engine writes it: nanoseconds, "Z" or an offset.
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


@dataclass(frozen=True)
class EngineImage:
    """One image the engine holds."""

    image_id: str
    tags: tuple[str, ...]  # name:tag, as the engine lists them
    labels: Mapping[str, str]
    size: int  # bytes of all its layers, those it shares with other images too
    created: float  # the config's date, seconds since the epoch
    parent: str  # the image it was built on by the engine's own builder; "" when none
    layers: tuple[str, ...]  # diff IDs, lowest first
    last_tagged: float | None  # when a tag last named it (`docker tag`, a build's -t), if ever

    @classmethod
    def from_inspect(cls, document: Mapping[str, Any]) -> EngineImage:
        config = document.get("Config") or {}
        return cls(
            image_id=str(document["Id"]),
            tags=tuple(document.get("RepoTags") or ()),
            labels=dict(config.get("Labels") or {}),
            size=int(document.get("Size") or 0),
            created=engine_time(str(document.get("Created") or "")) or 0.0,
            parent=str(document.get("Parent") or ""),
            layers=tuple((document.get("RootFS") or {}).get("Layers") or ()),
            last_tagged=engine_time(str((document.get("Metadata") or {}).get("LastTagTime", ""))),
        )


def engine_time(text: str) -> float | None:
    """Seconds since the epoch of an engine timestamp; None for none (the engine writes Go's zero
    time, year 1, for "never")."""
    match = _TIME.match(text)
    if match is None or text.startswith("0001-"):
        return None
    fraction = (match[2] or "")[:6].ljust(6, "0")
    zone = "+00:00" if match[3] == "Z" else match[3]
    return datetime.fromisoformat(f"{match[1]}.{fraction}{zone}").timestamp()
