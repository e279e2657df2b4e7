"""The image cache's entries carry a checksum: a damaged one is found, said, removed and its work
redone; an entry of a reprobuild that wrote none is passed over quietly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from builder import files
from builder.build import imagecache, normalise

LAYER = "sha256:" + "3" * 64
IMAGE = "sha256:" + "4" * 64


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return files.cache_root() / "images"


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "at", [0, 9, 10, -2, -1], ids=["value", "last digit", "space", "seal", "newline"]
)
def test_a_clean_mark_damaged_anywhere_is_found_said_and_removed(cache: Path, at: int) -> None:
    imagecache.mark_clean(LAYER, 1795305600)
    mark = cache / "clean" / normalise.RULES / LAYER[7:]
    assert imagecache.is_clean(LAYER, 1795305600)
    flip(mark, at)
    notes: list[str] = []
    assert not imagecache.is_clean(LAYER, 1795305600, notes.append)
    assert notes == [
        f"warning: the cache entry {mark} is damaged (its checksum does not match); checking the "
        "layer again"
    ]
    assert not mark.exists()


def test_a_name_is_kept_with_its_checksum_and_read_back(cache: Path) -> None:
    imagecache.keep_name("lab/x:deps-1", IMAGE)
    assert imagecache.named("lab/x:deps-1") == IMAGE
    assert imagecache.named_at("lab/x:deps-1", IMAGE) is not None
    assert imagecache.named("lab/x:deps-2") is None  # another name, another entry
    entry = cache / "names" / hashlib.sha256(b"lab/x:deps-1").hexdigest()
    flip(entry, 20)
    notes: list[str] = []
    assert imagecache.named("lab/x:deps-1", notes.append) is None
    assert notes == [
        f"warning: the cache entry {entry} is damaged (its checksum does not match); building "
        "lab/x:deps-1 again"
    ]


def test_a_config_that_no_longer_hashes_to_its_id_is_said_and_removed(cache: Path) -> None:
    raw = b'{"rootfs":{}}'
    image_id = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    imagecache.keep_config(raw)
    stored = cache / "configs" / f"{image_id[7:]}.json"
    flip(stored, 3)
    notes: list[str] = []
    assert imagecache.config(image_id, notes.append) is None
    assert notes == [
        f"warning: the cache entry {stored} is damaged (its checksum does not match); reading it "
        "from the engine again"
    ]
    assert not stored.exists()


def test_entries_written_without_a_checksum_are_passed_over_quietly(cache: Path) -> None:
    mark = cache / "clean" / normalise.RULES / LAYER[7:]
    mark.parent.mkdir(parents=True)
    mark.write_text("1795305600")
    name = cache / "names" / hashlib.sha256(b"lab/x:deps-1").hexdigest()
    name.parent.mkdir(parents=True)
    name.write_text(IMAGE)
    notes: list[str] = []
    assert not imagecache.is_clean(LAYER, 1795305600, notes.append)
    assert imagecache.named("lab/x:deps-1", notes.append) is None
    assert notes == []
    imagecache.mark_clean(LAYER, 1795305600)  # written anew, with its checksum
    assert imagecache.is_clean(LAYER, 1795305600, notes.append) and notes == []
