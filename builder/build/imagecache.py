"""What normalisation has read from the engine before, kept in this user's cache so that a rebuild
does not export the image again to read it.

- Image configs, by image ID. An image ID is the sha256 of its config, so a cached config is
  checked against its name on every read; a damaged or edited file is ignored (and read again
  from the engine), never trusted.
- Layers found clean, by diff ID and rules, with the earliest epoch their dates were judged
  against. A diff ID is the sha256 of the layer's bytes, so a layer with a known diff ID holds
  exactly what was scanned before.
- Images reprobuild loaded under a name, by that name: a tag can be moved by anyone, so a name is
  used again only while it still names the image recorded here.

A cache that cannot be written costs a later export, never a wrong answer: write failures are
ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from builder import files
from builder.build import normalise


def _root() -> Path:
    return files.cache_root() / "images"


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def config(image_id: str) -> bytes | None:
    """The config of `image_id` as the engine holds it, when read before and still intact."""
    try:
        raw = (_root() / "configs" / f"{_hex(image_id)}.json").read_bytes()
    except OSError:
        return None
    return raw if hashlib.sha256(raw).hexdigest() == _hex(image_id) else None


def keep_config(raw: bytes) -> None:
    _write(_root() / "configs" / f"{hashlib.sha256(raw).hexdigest()}.json", raw)


def _clean_marker(diff_id: str) -> Path:
    return _root() / "clean" / normalise.RULES / _hex(diff_id)


def _clean_since(diff_id: str) -> int | None:
    try:
        return int(_clean_marker(diff_id).read_text())
    except (OSError, ValueError):
        return None


def is_clean(diff_id: str, epoch: int) -> bool:
    """Whether the layer was scanned and found clean, under today's rules, against this epoch or
    an earlier one (a layer with no date after an epoch has none after any later one: a layer
    kept from an older lock is not read again)."""
    since = _clean_since(diff_id)
    return since is not None and since <= epoch


def mark_clean(diff_id: str, epoch: int) -> None:
    since = _clean_since(diff_id)
    if since is None or epoch < since:
        _write(_clean_marker(diff_id), str(epoch).encode())


def _name_file(reference: str) -> Path:
    return _root() / "names" / hashlib.sha256(reference.encode()).hexdigest()


def named(reference: str) -> str | None:
    """The image ID reprobuild itself loaded as `reference` (a tag anyone can move)."""
    try:
        return _name_file(reference).read_text().strip() or None
    except OSError:
        return None


def named_at(reference: str, image_id: str) -> float | None:
    """When reprobuild loaded `image_id` as `reference` (seconds since the epoch), if the record
    still names that image: the engine keeps no date for a name `docker load` gives."""
    path = _name_file(reference)
    try:
        return path.stat().st_mtime if path.read_text().strip() == image_id else None
    except OSError:
        return None


def keep_name(reference: str, image_id: str) -> None:
    _write(_name_file(reference), image_id.encode())


def _write(path: Path, data: bytes) -> None:
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomic(path, data)
