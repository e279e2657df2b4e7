"""What normalisation has read from the engine before, kept in this user's cache so that a rebuild
does not export the image again to read it.

- Image configs, by image ID. An image ID is the sha256 of its config, so a cached config is
  checked against its name on every read.
- Layers found clean, by diff ID and rules, with the earliest epoch their dates were judged
  against. A diff ID is the sha256 of the layer's bytes, so a layer with a known diff ID holds
  exactly what was scanned before.
- Images reprobuild loaded under a name, by that name: a tag can be moved by anyone, so a name is
  used again only while it still names the image recorded here.

Every entry but a config is written with a checksum of what it says and what it is about, and
checked on every read. A damaged entry is reported (`note`), removed and its work redone (the
config read from the engine again, the layer checked again, the image built again), never
trusted. A cache that cannot be written costs a later export, never a wrong answer: write
failures are ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from builder import files
from builder.build import normalise

Note = Callable[[str], None]


def _silent(_: str) -> None:
    pass


def _root() -> Path:
    return files.cache_root() / "images"


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def config(image_id: str, note: Note = _silent) -> bytes | None:
    """The config of `image_id` as the engine holds it, when read before and still intact."""
    path = _root() / "configs" / f"{_hex(image_id)}.json"
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    if hashlib.sha256(raw).hexdigest() == _hex(image_id):
        return raw
    _damaged(path, note, "reading it from the engine again")
    return None


def keep_config(raw: bytes) -> None:
    _write(_root() / "configs" / f"{hashlib.sha256(raw).hexdigest()}.json", raw)


def _clean_marker(diff_id: str) -> Path:
    return _root() / "clean" / normalise.RULES / _hex(diff_id)


def _clean_since(diff_id: str, note: Note) -> int | None:
    key = f"{normalise.RULES} {diff_id}"
    since = read_sealed(_clean_marker(diff_id), "clean", key, note, "checking the layer again")
    return int(since) if since is not None and since.isdigit() else None


def is_clean(diff_id: str, epoch: int, note: Note = _silent) -> bool:
    """Whether the layer was scanned and found clean, under today's rules, against this epoch or
    an earlier one (a layer with no date after an epoch has none after any later one: a layer
    kept from an older lock is not read again)."""
    since = _clean_since(diff_id, note)
    return since is not None and since <= epoch


def mark_clean(diff_id: str, epoch: int) -> None:
    since = _clean_since(diff_id, _silent)
    if since is None or epoch < since:
        key = f"{normalise.RULES} {diff_id}"
        write_sealed(_clean_marker(diff_id), "clean", key, str(epoch))


def _name_file(reference: str) -> Path:
    return _root() / "names" / hashlib.sha256(reference.encode()).hexdigest()


def named(reference: str, note: Note = _silent) -> str | None:
    """The image ID reprobuild itself loaded as `reference` (a tag anyone can move)."""
    return read_sealed(
        _name_file(reference), "name", reference, note, f"building {reference} again"
    )


def named_at(reference: str, image_id: str) -> float | None:
    """When reprobuild loaded `image_id` as `reference` (seconds since the epoch), if the record
    still names that image: the engine keeps no date for a name `docker load` gives."""
    path = _name_file(reference)
    try:
        loaded = path.stat().st_mtime
    except OSError:
        return None
    return loaded if read_sealed(path, "name", reference, _silent, "") == image_id else None


def keep_name(reference: str, image_id: str) -> None:
    write_sealed(_name_file(reference), "name", reference, image_id)


def _seal(kind: str, key: str, value: str) -> str:
    return hashlib.sha256(f"{kind}\0{key}\0{value}".encode()).hexdigest()[:16]


def write_sealed(path: Path, kind: str, key: str, value: str) -> None:
    """Keep `value` (one line, no newline) as what the cache knows of `key`, with its checksum."""
    _write(path, f"{value} {_seal(kind, key, value)}\n".encode())


def read_sealed(path: Path, kind: str, key: str, note: Note, redo: str) -> str | None:
    """The value kept at `path` for `key`, if its checksum holds. A damaged entry is reported
    with what is redone (`redo`) and removed; an entry written before entries had checksums (an
    epoch or an image ID alone) is passed over without a word (its work is redone, and the entry
    written anew)."""
    try:
        text = path.read_bytes().decode(errors="replace")
    except OSError:
        return None
    value = text.removesuffix("\n").rpartition(" ")[0]
    if value and text == f"{value} {_seal(kind, key, value)}\n":
        return value
    if not _UNSEALED.fullmatch(text):
        _damaged(path, note, redo)
    return None


# The entries of reprobuild versions that wrote no checksum: a clean mark's epoch, an image ID.
_UNSEALED = re.compile(r"[0-9]+|sha256:[0-9a-f]{64}")


def _damaged(path: Path, note: Note, redo: str) -> None:
    note(f"warning: the cache entry {path} is damaged (its checksum does not match); {redo}")
    with contextlib.suppress(OSError):
        path.unlink()


def _write(path: Path, data: bytes) -> None:
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomic(path, data)
