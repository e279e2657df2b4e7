"""The digest of a run's data and outputs: real files under tmp_path, exact roots and messages."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from builder.errors import ReplayError, RunInputError
from builder.run import datadigest
from builder.run.datadigest import Digest, compare, digest_data, digest_outputs, verify_listing

# a.txt "hello\n", sub/empty.bin "", sub/z "xyz". The root was computed once by `reference_root`
# below and, apart from Python, with openssl dgst over the leaf and node bytes in a shell.
KNOWN_ROOT = "sha256:f556ca346b74964b105c4e7d76f533757b5e29627a2546c60145776503e47180"
KNOWN_ENTRIES = [
    ("a.txt", 6, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"),
    ("sub/empty.bin", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ("sub/z", 3, "3608bca1e44ea6c4d268eb6db02260269892c0b42b86bbf1e77a6fa16c3c9282"),
]
OLD = time.time() - 3600  # an mtime old enough to be stamped (not racy)


def reference_root(entries: list[tuple[str, int, str]]) -> str:
    """RFC 6962's tree hash, written apart from the module: recursive on lists."""

    def tree(leaves: list[bytes]) -> bytes:
        if len(leaves) == 1:
            return hashlib.sha256(b"\x00" + leaves[0]).digest()
        split = 1
        while split * 2 < len(leaves):
            split *= 2
        pair = tree(leaves[:split]) + tree(leaves[split:])
        return hashlib.sha256(b"\x01" + pair).digest()

    if not entries:
        return "sha256:" + hashlib.sha256(b"").hexdigest()
    ordered = sorted(entries, key=lambda entry: entry[0].encode())
    leaves = [f"{path}\0{size}\0{sha}".encode() for path, size, sha in ordered]
    return "sha256:" + tree(leaves).hex()


def write(folder: Path, files: dict[str, bytes], mtime: float | None = OLD) -> Path:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
    return folder


def known_tree(folder: Path) -> Path:
    return write(folder, {"a.txt": b"hello\n", "sub/empty.bin": b"", "sub/z": b"xyz"})


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "stamps"


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths the digest reads, in the order its threads read them."""
    seen: list[str] = []
    real = datadigest._hash_file

    def counting(path: str, *args: Any) -> tuple[int, str, tuple[int, int, int, int, int]]:
        seen.append(path)
        return real(path, *args)

    monkeypatch.setattr(datadigest, "_hash_file", counting)
    yield seen


def test_the_root_of_a_known_tree(tmp_path: Path, cache: Path) -> None:
    digest = digest_data("train", known_tree(tmp_path / "data"), cache_dir=cache)
    assert digest.root == KNOWN_ROOT == reference_root(KNOWN_ENTRIES)
    assert digest.entries == KNOWN_ENTRIES
    assert (digest.files, digest.bytes) == (3, 9)
    assert digest.as_json() == {"root": KNOWN_ROOT, "files": 3, "bytes": 9}
    assert digest.listing() == [list(entry) for entry in KNOWN_ENTRIES]


@pytest.mark.parametrize("count", range(11))
def test_the_tree_splits_as_rfc_6962_does(count: int) -> None:
    entries = [(f"f{index:02}", index, f"{index:064x}") for index in range(count)]
    assert datadigest.merkle_root(entries) == reference_root(entries)
    assert Digest(entries).root == reference_root(entries)


def test_a_single_file_is_listed_under_its_base_name(tmp_path: Path, cache: Path) -> None:
    write(tmp_path, {"data/corpus.txt": b"hello\n"})
    digest = digest_data("corpus", tmp_path / "data" / "corpus.txt", cache_dir=cache)
    assert digest.entries == [("corpus.txt", 6, KNOWN_ENTRIES[0][2])]
    leaf = b"\x00corpus.txt\x006\x00" + KNOWN_ENTRIES[0][2].encode()
    assert digest.root == "sha256:" + hashlib.sha256(leaf).hexdigest()
    # A link to the file is listed under the link's name.
    (tmp_path / "link.txt").symlink_to(tmp_path / "data" / "corpus.txt")
    linked = digest_data("corpus", tmp_path / "link.txt", cache_dir=cache)
    assert linked.entries == [("link.txt", 6, KNOWN_ENTRIES[0][2])]


def test_empty_folders_are_not_content(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "empty" / "a" / "b").mkdir(parents=True)
    digest = digest_data("train", tmp_path / "empty", cache_dir=cache)
    assert digest.root == "sha256:" + hashlib.sha256(b"").hexdigest() == datadigest.EMPTY_ROOT
    assert (digest.files, digest.bytes, digest.entries) == (0, 0, [])
    known_tree(tmp_path / "data")
    (tmp_path / "data" / "sub" / "nothing").mkdir()
    assert digest_data("train", tmp_path / "data", cache_dir=cache).root == KNOWN_ROOT


def test_sockets_and_fifos_are_not_content(tmp_path: Path, cache: Path) -> None:
    os.mkfifo(known_tree(tmp_path / "data") / "sub" / "pipe")
    assert digest_data("train", tmp_path / "data", cache_dir=cache).root == KNOWN_ROOT


def test_the_order_files_were_made_in_does_not_matter(tmp_path: Path, cache: Path) -> None:
    files = {f"d{index % 3}/f{index}": bytes([index]) * index for index in range(20)}
    first = write(tmp_path / "first", files)
    second = write(tmp_path / "second", dict(reversed(files.items())))
    assert digest_data("a", first, cache=False).root == digest_data("b", second, cache=False).root


def test_names_sort_by_their_utf8_bytes(tmp_path: Path) -> None:
    write(tmp_path, {"Z": b"1", "a.c": b"2", "é": b"3", "a-x/c": b"4", "a/b": b"5"})
    (tmp_path / os.fsdecode(b"\xff")).write_bytes(b"6")  # not UTF-8: kept as its bytes
    digest = digest_data("train", tmp_path, cache=False)
    assert [path for path, _, _ in digest.entries] == ["Z", "a-x/c", "a.c", "a/b", "é", "\udcff"]
    stored = json.loads(json.dumps(digest.listing()))
    assert verify_listing(digest.root, stored)


def test_a_one_byte_change_is_named(tmp_path: Path, cache: Path) -> None:
    data = known_tree(tmp_path / "data")
    recorded = digest_data("train", data, cache_dir=cache)
    write(data, {"sub/z": b"xyZ"})
    current = digest_data("train", data, cache_dir=cache)
    assert current.root != recorded.root
    differences = compare(recorded.listing(), current)
    assert (differences.changed, differences.added, differences.missing) == (["sub/z"], [], [])
    assert not differences.identical
    assert differences.describe() == "1 file differs from the recorded data: changed sub/z."


def test_added_and_missing_files_are_named(tmp_path: Path, cache: Path) -> None:
    data = known_tree(tmp_path / "data")
    recorded = digest_data("train", data, cache_dir=cache)
    assert compare(recorded.listing(), recorded).identical
    (data / "a.txt").unlink()
    write(data, {"sub/z": b"abc", "new/b.bin": b"b", "new/a.bin": b"a"})
    differences = compare(recorded.listing(), digest_data("train", data, cache_dir=cache))
    assert differences.changed == ["sub/z"]
    assert differences.added == ["new/a.bin", "new/b.bin"]
    assert differences.missing == ["a.txt"]
    assert differences.describe() == (
        "4 files differ from the recorded data: changed sub/z; missing a.txt; "
        "added new/a.bin, new/b.bin."
    )
    assert differences.describe(limit=1, subject="the recorded outputs") == (
        "4 files differ from the recorded outputs: changed sub/z; missing a.txt; "
        "added new/a.bin and 1 more."
    )


def test_describe_says_when_nothing_differs() -> None:
    listing = [list(entry) for entry in KNOWN_ENTRIES]
    assert compare(listing, listing).describe() == "no file differs from the recorded data."


def test_the_second_pass_reads_only_the_stamps(
    tmp_path: Path, cache: Path, hashed: list[str]
) -> None:
    data = known_tree(tmp_path / "data")
    first = digest_data("train", data, cache_dir=cache)
    assert sorted(hashed) == sorted(str(data / path) for path, _, _ in KNOWN_ENTRIES)
    stamps = Path(datadigest.cache_file(os.path.realpath(data), cache))
    assert stamps.parent == cache
    written = stamps.stat().st_mtime_ns
    hashed.clear()
    second = digest_data("train", data, cache_dir=cache)
    assert hashed == []
    assert second.root == first.root == KNOWN_ROOT
    assert stamps.stat().st_mtime_ns == written  # nothing new hashed: not written again


def test_a_same_size_change_with_a_new_mtime_is_hashed_again(
    tmp_path: Path, cache: Path, hashed: list[str]
) -> None:
    data = known_tree(tmp_path / "data")
    digest_data("train", data, cache_dir=cache)
    hashed.clear()
    write(data, {"a.txt": b"hellO\n"}, mtime=OLD + 1)
    changed = digest_data("train", data, cache_dir=cache)
    assert hashed == [str(data / "a.txt")]
    assert changed.entries[0] == ("a.txt", 6, hashlib.sha256(b"hellO\n").hexdigest())
    hashed.clear()
    assert digest_data("train", data, cache_dir=cache).root == changed.root
    assert hashed == []


def test_a_file_written_just_now_is_not_stamped(
    tmp_path: Path, cache: Path, hashed: list[str]
) -> None:
    """git's racy-clean rule: it could be written again within the timestamp's granularity."""
    data = known_tree(tmp_path / "data")
    write(data, {"fresh.bin": b"new"}, mtime=None)
    digest_data("train", data, cache_dir=cache)
    hashed.clear()
    digest_data("train", data, cache_dir=cache)
    assert hashed == [str(data / "fresh.bin")]


def test_fresh_files_only_write_no_cache(tmp_path: Path, cache: Path) -> None:
    data = write(tmp_path / "data", {"a": b"1"}, mtime=None)
    digest_data("train", data, cache_dir=cache)
    assert not cache.exists()


@pytest.mark.parametrize("text", ["{not json", "[]", '{"version": 1}', "", "\x00\x01"])
def test_a_corrupt_cache_is_ignored(
    tmp_path: Path, cache: Path, hashed: list[str], text: str
) -> None:
    data = known_tree(tmp_path / "data")
    digest_data("train", data, cache_dir=cache)
    stamps = Path(datadigest.cache_file(os.path.realpath(data), cache))
    stamps.write_text(text)
    hashed.clear()
    assert digest_data("train", data, cache_dir=cache).root == KNOWN_ROOT
    assert len(hashed) == 3
    assert json.loads(stamps.read_text())["version"] == datadigest.CACHE_VERSION  # rewritten


def test_a_forged_stamp_is_dropped(tmp_path: Path, cache: Path, hashed: list[str]) -> None:
    data = known_tree(tmp_path / "data")
    digest_data("train", data, cache_dir=cache)
    stamps = Path(datadigest.cache_file(os.path.realpath(data), cache))
    content = json.loads(stamps.read_text())
    content["files"]["a.txt"][5] = "not a sha256"
    content["files"]["sub/z"][0] = "3"
    stamps.write_text(json.dumps(content))
    hashed.clear()
    assert digest_data("train", data, cache_dir=cache).root == KNOWN_ROOT
    assert sorted(hashed) == [str(data / "a.txt"), str(data / "sub" / "z")]


def test_a_cache_that_cannot_be_written_is_skipped(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    data = known_tree(tmp_path / "data")
    assert digest_data("train", data, cache_dir=blocker / "stamps").root == KNOWN_ROOT
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data", "not-a-folder"]


def test_the_cache_lives_under_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    data = known_tree(tmp_path / "data")
    digest_data("train", data)
    name = hashlib.sha256(os.path.realpath(data).encode()).hexdigest() + ".json"
    assert (tmp_path / "xdg" / "reprobuild" / "data-stamps" / name).is_file()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datadigest.default_cache_dir() == str(tmp_path / "home/.cache/reprobuild/data-stamps")


def test_outputs_are_digested_without_a_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    outputs = known_tree(tmp_path / "outputs")
    assert digest_outputs(outputs).root == KNOWN_ROOT
    assert not (tmp_path / "xdg").exists()
    with pytest.raises(RunInputError) as raised:
        digest_outputs(tmp_path / "gone")
    assert str(raised.value) == (
        f"outputs: {tmp_path}/gone does not exist. "
        "Give the folder the run wrote its outputs to: --outputs PATH."
    )


def test_files_across_the_read_size_on_threads(tmp_path: Path) -> None:
    chunk = datadigest.CHUNK
    sizes = [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk + 7, *range(2, 40)]
    files = {f"f{index}": os.urandom(size) for index, size in enumerate(sizes)}
    digest = digest_data("train", write(tmp_path / "data", files), cache=False)
    expected = [(name, len(data), hashlib.sha256(data).hexdigest()) for name, data in files.items()]
    assert digest.entries == sorted(expected)
    assert digest.bytes == sum(sizes)


def test_progress_is_reported_in_bytes(tmp_path: Path, cache: Path) -> None:
    data = write(tmp_path / "data", {"big": b"x" * (5 << 20), "small": b"y"})
    seen: list[tuple[int, int]] = []
    digest_data("train", data, cache_dir=cache, progress=lambda *a: seen.append(a))
    assert seen[-1] == ((5 << 20) + 1, (5 << 20) + 1)
    assert all(done <= total == (5 << 20) + 1 for done, total in seen)
    seen.clear()
    digest_data("train", data, cache_dir=cache, progress=lambda *a: seen.append(a))
    assert seen == []  # nothing to hash


def test_a_listing_recomputes_its_root(tmp_path: Path) -> None:
    digest = digest_data("train", known_tree(tmp_path), cache=False)
    stored = json.loads(json.dumps({"data": digest.as_json(), "files": digest.listing()}))
    assert verify_listing(stored["data"]["root"], stored["files"])
    rebuilt = Digest.from_listing(stored["files"])
    assert (rebuilt.root, rebuilt.files, rebuilt.bytes) == (KNOWN_ROOT, 3, 9)
    assert verify_listing(KNOWN_ROOT, list(reversed(stored["files"])))  # order is not content


def tampered() -> Iterator[list[list[Any]]]:
    listing = [list(entry) for entry in KNOWN_ENTRIES]
    yield [[*listing[0][:2], "0" * 64], *listing[1:]]  # another sha256
    yield [[listing[0][0], 7, listing[0][2]], *listing[1:]]  # another size
    yield [["b.txt", *listing[0][1:]], *listing[1:]]  # renamed
    yield listing[1:]  # dropped
    yield [*listing, ["c", 1, "1" * 64]]  # added


@pytest.mark.parametrize("listing", list(tampered()))
def test_a_tampered_listing_is_rejected(listing: list[list[Any]]) -> None:
    assert not verify_listing(KNOWN_ROOT, listing)
    assert Digest.from_listing(listing).root != KNOWN_ROOT


@pytest.mark.parametrize(
    ("listing", "problem"),
    [
        ([["a", 1]], "item 0 (['a', 1]) is not a [path, size, sha256] triple"),
        ([["/etc/passwd", 1, "a" * 64]], "item 0 (['/etc/passwd', 1, '" + "a" * 64 + "'])"),
        ([["a", -1, "a" * 64]], "has no size"),
        ([["a", True, "a" * 64]], "has no size"),
        ([["a", 1, "A" * 64]], "has no sha256 (64 lowercase hex digits)"),
        ([["a", 1, "a" * 64], ["a", 1, "a" * 64]], "'a' is listed twice"),
    ],
)
def test_a_malformed_listing_is_named(listing: list[list[Any]], problem: str) -> None:
    assert not verify_listing(KNOWN_ROOT, listing)
    with pytest.raises(ReplayError, match="the recorded data listing is malformed") as raised:
        Digest.from_listing(listing)
    assert problem in str(raised.value)


def test_a_missing_path_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(RunInputError) as raised:
        digest_data("train", tmp_path / "nowhere", cache=False)
    assert str(raised.value) == (
        f"data 'train': {tmp_path}/nowhere does not exist. "
        "Give an existing folder or file: --data train=PATH."
    )


UNREADABLE = (
    "data 'train': cannot read {path} (Permission denied). Make it readable by this user (e.g. "
    "chmod u+r), or move it out of the folder: every file in it is part of the digest the run "
    "records."
)


def test_an_unreadable_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through os.open, which the digest reads with: root (this suite's user in CI) reads a
    chmod 000 file."""
    data = known_tree(tmp_path / "data")
    locked = str(data / "sub" / "z")
    real_open = os.open

    def refusing(path: str, *args: Any, **kwargs: Any) -> int:
        if path == locked:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)
    with pytest.raises(RunInputError) as raised:
        digest_data("train", data, cache=False)
    assert str(raised.value) == UNREADABLE.format(path=locked)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_file_is_named_by_its_mode(tmp_path: Path) -> None:
    data = known_tree(tmp_path / "data")
    (data / "sub" / "z").chmod(0)
    with pytest.raises(RunInputError) as raised:
        digest_data("train", data, cache=False)
    assert str(raised.value) == UNREADABLE.format(path=data / "sub" / "z")


def test_links_inside_the_folder_are_followed(tmp_path: Path, cache: Path) -> None:
    data = known_tree(tmp_path / "data")
    (data / "again.txt").symlink_to("a.txt")
    (data / "mirror").symlink_to(data / "sub")  # absolute, and inside
    digest = digest_data("train", data, cache_dir=cache)
    assert digest.entries == [
        KNOWN_ENTRIES[0],
        ("again.txt", *KNOWN_ENTRIES[0][1:]),
        ("mirror/empty.bin", *KNOWN_ENTRIES[1][1:]),
        ("mirror/z", *KNOWN_ENTRIES[2][1:]),
        *KNOWN_ENTRIES[1:],
    ]
    # Through a linked root, the same content.
    (tmp_path / "current").symlink_to("data")
    assert digest_data("train", tmp_path / "current", cache_dir=cache).root == digest.root


def test_a_dangling_link_is_refused(tmp_path: Path) -> None:
    data = known_tree(tmp_path / "data")
    (data / "sub" / "gone").symlink_to("../nothing")
    with pytest.raises(RunInputError) as raised:
        digest_data("train", data, cache=False)
    assert str(raised.value) == (
        f"data 'train': {data}/sub/gone is a symlink to ../nothing, which does not exist. "
        "Remove the link or restore its target: the container could not read it either."
    )


def test_a_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    data = known_tree(tmp_path / "data")
    write(tmp_path, {"elsewhere.txt": b"x"})
    (data / "out.txt").symlink_to("../elsewhere.txt")
    with pytest.raises(RunInputError) as raised:
        digest_data("train", data, cache=False)
    assert str(raised.value) == (
        f"data 'train': {data}/out.txt is a symlink to {tmp_path}/elsewhere.txt, outside the "
        "folder; the container sees only the folder, so it could not read it there. Replace "
        "the link with a copy of its target, or give the folder that holds both."
    )


def test_a_folder_link_loop_is_refused(tmp_path: Path) -> None:
    data = known_tree(tmp_path / "data")
    (data / "sub" / "up").symlink_to("..")
    with pytest.raises(RunInputError) as raised:
        digest_data("train", data, cache=False)
    assert str(raised.value) == (
        f"data 'train': {data}/sub/up is a symlink loop: it leads to {data}, a folder that "
        "holds it. Remove the link: a program that walks the folder in the container would "
        "loop too."
    )


def test_a_file_link_loop_is_refused(tmp_path: Path) -> None:
    data = known_tree(tmp_path / "data")
    (data / "x").symlink_to("y")
    (data / "y").symlink_to("x")
    with pytest.raises(RunInputError, match=r"is a symlink loop: its links lead back to"):
        digest_data("train", data, cache=False)
