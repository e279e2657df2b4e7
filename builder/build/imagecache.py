"""What normalisation has read from the engine before, kept in this user's cache so that a rebuild
does not export the image again to read it.

- Image configs, by image ID. An image ID is the sha256 of its config, so a cached config is
  checked against its name on every read; a damaged or edited file is ignored (and read again
  from the engine), never trusted.
- Layers found clean, by diff ID, epoch and rules. A diff ID is the sha256 of the layer's bytes,
  so a layer with a known diff ID holds exactly what was scanned before; the verdict depends on
  the epoch its dates were judged against and on the noise rules, both part of the key.
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


def _clean_marker(diff_id: str, epoch: int) -> Path:
    return _root() / "clean" / normalise.RULES / str(epoch) / _hex(diff_id)


def is_clean(diff_id: str, epoch: int) -> bool:
    """Whether the layer was scanned and found clean, under today's rules and this epoch."""
    return _clean_marker(diff_id, epoch).is_file()


def mark_clean(diff_id: str, epoch: int) -> None:
    _write(_clean_marker(diff_id, epoch), b"")


def _name_file(reference: str) -> Path:
    return _root() / "names" / hashlib.sha256(reference.encode()).hexdigest()


def named(reference: str) -> str | None:
    """The image ID reprobuild itself loaded as `reference` (a tag anyone can move)."""
    try:
        return _name_file(reference).read_text().strip() or None
    except OSError:
        return None


def keep_name(reference: str, image_id: str) -> None:
    _write(_name_file(reference), image_id.encode())


def _write(path: Path, data: bytes) -> None:
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomic(path, data)
