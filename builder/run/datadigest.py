"""Content digests of a run's data (`--data NAME=PATH`) and of its outputs folder.

A digest lists every regular file under PATH, a folder or a single file, as (relative POSIX path,
size, sha256 hex), sorted by the path's UTF-8 bytes; a single file is listed under its base name.
Empty folders are not content, and neither are sockets, FIFOs and devices (skipped). Hidden files
count like any other: the container sees them. The root is a Merkle tree over the sorted leaves,
as RFC 6962 builds one: a leaf's hash is sha256(0x00 || path UTF-8 || 0x00 || decimal size ||
0x00 || sha256 hex), a node's sha256(0x01 || left || right), the split at the largest power of
two below the count, and the empty tree's root sha256(b""). It is written "sha256:<hex>". The
listing alone recomputes the root (`verify_listing`), so a stored listing that was edited shows;
`compare` names each file that changed, was added or is missing.

Symlinks are read as the container reads them: followed. A link to a file is listed under the
link's path with its target's content; a link to a folder is walked as a folder under the link's
path. A link must resolve inside PATH (after resolving PATH's own links, as the bind mount does):
the container sees only the mounted folder, so a link out of it would not read there what it
reads here, and is refused with the link named. A dangling link and a symlink loop (a link to a
folder that holds it) are refused too. Each refusal says how to mend it.

Re-hashing an unchanged dataset costs a stat pass: a file whose size, mtime, ctime, inode and
device are as they were when it was hashed keeps its sha256 (as git's index and make judge files;
ctime as well because a content write that restores the mtime still moves it). The stamps of one
root are ONE JSON file, $XDG_CACHE_HOME/reprobuild/data-stamps/<sha256 of the absolute root>.json
(a dataset can have 100k files), written atomically and only when something new was hashed. A
cache that cannot be read or parsed is ignored (everything is hashed again), and one that cannot
be written is skipped; neither is an error. `digest_outputs` uses no cache: outputs are fresh.

Files are read in 1 MiB reads; those of 1 MiB or more on up to min(4, CPUs) threads, largest
first (hashlib lets go of the GIL while it hashes a large buffer), the smaller ones one after the
other on one of them (see _Hasher). Standard library only, and none of dataclasses, pathlib or
typing at module level: the run package keeps its imports lean (see builder/run/__init__.py).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import threading
import time

from builder.errors import ReplayError, RunInputError

TYPE_CHECKING = False  # typing's own flag, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

    Entry = tuple[str, int, str]  # relative POSIX path, size, sha256 hex
    Progress = Callable[[int, int], None]  # bytes hashed so far, bytes to hash in this pass
    # What a stamp holds besides the sha256: size, mtime_ns, ctime_ns, inode, device.
    Key = tuple[int, int, int, int, int]

CHUNK = 1 << 20
SHARED_FROM = 1 << 20  # a file this large is hashed on any of the threads (see _Hasher)
WORKERS = 4
EMPTY_ROOT = "sha256:" + hashlib.sha256(b"").hexdigest()
CACHE_VERSION = 1
# Racy stamps (git's "racy clean" rule). A file written within one timestamp tick of the moment it
# is hashed can be written again in the same tick, leaving size and mtime as they were but not its
# content; a stamp taken then would hide that change for good. So a file is stamped only when its
# mtime is at least this long before the pass began (2 s: FAT's tick; ext4 and friends have ns,
# but some network and container filesystems keep whole seconds). Such a file is hashed again next
# time, and stamped once it is older.
RACY_NS = 2_000_000_000
PROGRESS_EVERY_S = 0.25
_HEX = frozenset("0123456789abcdef")


class Digest:
    """A tree's digest: `root` ("sha256:<hex>"), `files` and `bytes` (counts), and `entries`, the
    sorted (path, size, sha256) of each file."""

    __slots__ = ("bytes", "entries", "files", "root")

    def __init__(self, entries: list[Entry]) -> None:
        """`entries` sorted by `sort_key` of their paths, each path once."""
        self.entries = entries
        self.files = len(entries)
        self.bytes = sum(size for _, size, _ in entries)
        self.root = merkle_root(entries)

    def as_json(self) -> dict[str, Any]:
        return {"root": self.root, "files": self.files, "bytes": self.bytes}

    def listing(self) -> list[list[Any]]:
        """The entries as JSON stores them: [path, size, sha256] lists."""
        return [[path, size, sha256] for path, size, sha256 in self.entries]

    @classmethod
    def from_listing(cls, listing: Iterable[Sequence[Any]]) -> Digest:
        """The digest a stored listing describes (its root recomputed from it). A malformed
        listing is a `ReplayError` that names the item."""
        entries: dict[str, Entry] = {}
        for index, item in enumerate(listing):
            problem = _listing_problem(item)
            if problem:
                raise ReplayError(
                    f"the recorded data listing is malformed: item {index} ({item!r}) {problem}. "
                    "The run record was edited or damaged; take the listing from an intact copy."
                )
            if item[0] in entries:
                raise ReplayError(
                    f"the recorded data listing is malformed: {item[0]!r} is listed twice. "
                    "The run record was edited or damaged; take the listing from an intact copy."
                )
            entries[item[0]] = (item[0], item[1], item[2])
        return cls(sorted(entries.values(), key=lambda entry: sort_key(entry[0])))


def _listing_problem(item: object) -> str:
    if not isinstance(item, list | tuple) or len(item) != 3:
        return "is not a [path, size, sha256] triple"
    path, size, sha256 = item
    if not isinstance(path, str) or not path or path.startswith("/") or "\x00" in path:
        return "has no relative path"
    try:
        sort_key(path)
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to
        return "has no relative path"
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return "has no size"
    if not isinstance(sha256, str) or len(sha256) != 64 or not _HEX.issuperset(sha256):
        return "has no sha256 (64 lowercase hex digits)"
    return ""


def verify_listing(root: str, listing: Iterable[Sequence[Any]]) -> bool:
    """Whether `listing` (as `Digest.listing` stores it) has the Merkle root `root`; a malformed
    listing does not."""
    try:
        return Digest.from_listing(listing).root == root
    except ReplayError:
        return False


def sort_key(path: str) -> bytes:
    """The order of the entries: the path's UTF-8 bytes (a name that is not UTF-8 keeps its own
    bytes, as os.fsencode gives them)."""
    return path.encode("utf-8", "surrogateescape")


def leaf_bytes(path: str, size: int, sha256: str) -> bytes:
    """A leaf's bytes: path UTF-8, 0x00, decimal size, 0x00, sha256 hex."""
    return b"%b\x00%d\x00%b" % (sort_key(path), size, sha256.encode())


def merkle_root(entries: Sequence[Entry]) -> str:
    """RFC 6962's Merkle tree hash over the sorted entries, as "sha256:<hex>"."""
    if not entries:
        return EMPTY_ROOT
    sha256 = hashlib.sha256
    leaves = [sha256(b"\x00" + leaf_bytes(*entry)).digest() for entry in entries]
    return "sha256:" + _subtree(leaves, 0, len(leaves)).hex()


def _subtree(leaves: list[bytes], start: int, end: int) -> bytes:
    count = end - start
    if count == 1:
        return leaves[start]
    split = start + (1 << ((count - 1).bit_length() - 1))  # the largest power of two < count
    left, right = _subtree(leaves, start, split), _subtree(leaves, split, end)
    return hashlib.sha256(b"\x01" + left + right).digest()


class Differences:
    """What differs between a recorded listing and the data now: sorted paths."""

    __slots__ = ("added", "changed", "missing")

    def __init__(self, changed: list[str], added: list[str], missing: list[str]) -> None:
        self.changed = changed
        self.added = added
        self.missing = missing

    @property
    def identical(self) -> bool:
        return not (self.changed or self.added or self.missing)

    def describe(self, limit: int = 10, subject: str = "the recorded data") -> str:
        """One paragraph naming the first `limit` files of each kind, e.g. "3 files differ from
        the recorded data: changed train/x.bin; missing a.txt; added b.txt." """
        count = len(self.changed) + len(self.added) + len(self.missing)
        if not count:
            return f"no file differs from {subject}."
        parts = [
            f"{kind} {_first(paths, limit)}"
            for kind, paths in (
                ("changed", self.changed),
                ("missing", self.missing),
                ("added", self.added),
            )
            if paths
        ]
        verb = "file differs" if count == 1 else "files differ"
        return f"{count} {verb} from {subject}: {'; '.join(parts)}."


def _first(paths: list[str], limit: int) -> str:
    shown = ", ".join(paths[: max(limit, 1)])
    more = len(paths) - max(limit, 1)
    return f"{shown} and {more} more" if more > 0 else shown


def compare(
    recorded: Digest | Iterable[Sequence[Any]], current: Digest | Iterable[Sequence[Any]]
) -> Differences:
    """The files of `current` that changed (size or sha256), were added or are missing against
    `recorded`; either is a `Digest` or a stored listing."""
    before = _by_path(recorded)
    now = _by_path(current)
    changed = [path for path, value in now.items() if path in before and before[path] != value]
    added = [path for path in now if path not in before]
    missing = [path for path in before if path not in now]
    return Differences(
        sorted(changed, key=sort_key), sorted(added, key=sort_key), sorted(missing, key=sort_key)
    )


def _by_path(digest: Digest | Iterable[Sequence[Any]]) -> dict[str, tuple[int, str]]:
    entries = digest.entries if isinstance(digest, Digest) else digest
    return {entry[0]: (entry[1], entry[2]) for entry in entries}


# Digesting a path.


class _Subject:
    """Who the messages speak of, and the fix for a path that is not there."""

    def __init__(self, prefix: str, missing_fix: str, *, follow_links: bool = True) -> None:
        self.prefix = prefix
        self.missing_fix = missing_fix
        # Data links are followed, as the container reads them; an output's link is content of
        # its own (where it points), since its target is a container path the host may lack.
        self.follow_links = follow_links
        self.links: list[Entry] = []

    def error(self, text: str) -> RunInputError:
        return RunInputError(f"{self.prefix}: {text}")


def digest_data(
    name: str,
    path: str | os.PathLike[str],
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> Digest:
    """The digest of `--data NAME=PATH` (a folder or a single file). With `cache`, files whose
    stamps in `cache_dir` (default: `default_cache_dir()`) still hold are not hashed again.
    `progress(done_bytes, total_bytes)` is called now and then while files are hashed, `total`
    being the bytes this pass must hash. A problem is a `RunInputError` naming the file."""
    subject = _Subject(f"data {name!r}", f"Give an existing folder or file: --data {name}=PATH.")
    return _digest(subject, path, cache, cache_dir, progress)


def digest_outputs(folder: str | os.PathLike[str], *, progress: Progress | None = None) -> Digest:
    """The digest of a run's outputs folder: `digest_data`'s, with no stamp cache (outputs are
    freshly written, so a stamp would rarely be reused, and most would be racy anyway), and its
    symlinks recorded as links (`link_entry`), not followed: a link the command made names a
    path inside the container, which the host may not have."""
    subject = _Subject(
        "outputs",
        "Give the folder the run wrote its outputs to: --outputs PATH.",
        follow_links=False,
    )
    return _digest(subject, folder, False, None, progress)


def default_cache_dir() -> str:
    """$XDG_CACHE_HOME/reprobuild/data-stamps (XDG_CACHE_HOME: ~/.cache when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "reprobuild", "data-stamps")


def cache_file(root: str, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """The stamp file of the absolute path `root` (symlinks resolved) in `cache_dir`."""
    folder = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
    name = hashlib.sha256(sort_key(root)).hexdigest()
    return os.path.join(folder, f"{name}.json")


class _Found:
    """A regular file of the walk: its listed path, where to read it, and its stat key."""

    __slots__ = ("key", "path", "relative")

    def __init__(self, relative: str, path: str, key: Key) -> None:
        self.relative = relative
        self.path = path
        self.key = key


def _key(status: os.stat_result) -> Key:
    return (
        status.st_size,
        status.st_mtime_ns,
        status.st_ctime_ns,
        status.st_ino,
        status.st_dev,
    )


def _digest(
    subject: _Subject,
    path: str | os.PathLike[str],
    use_cache: bool,
    cache_dir: str | os.PathLike[str] | None,
    progress: Progress | None,
) -> Digest:
    started_ns = time.time_ns()
    root, found = _files(subject, os.path.abspath(os.fspath(path)))
    entries: list[Entry] = list(subject.links)
    stamps_at = cache_file(root, cache_dir) if use_cache else None
    stamps = _load_stamps(stamps_at, root) if stamps_at else {}
    kept: dict[str, list[Any]] = {}  # the stamps the cache file will hold
    jobs: list[_Found] = []
    for item in found:
        stamp = stamps.get(item.relative)
        if stamp is not None and tuple(stamp[:5]) == item.key:
            entries.append((item.relative, item.key[0], stamp[5]))
            kept[item.relative] = stamp
        else:
            jobs.append(item)
    if jobs:
        outcomes = _Hasher([item.path for item in jobs], [item.key[0] for item in jobs]).run(
            sum(item.key[0] for item in jobs), progress
        )
        for item, outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, OSError):
                raise subject.error(_unreadable(item.path, outcome))
        stamped = 0
        for item, outcome in zip(jobs, outcomes, strict=True):
            assert outcome is not None and not isinstance(outcome, OSError)  # none failed
            size, sha256, after = outcome
            entries.append((item.relative, size, sha256))
            # Stamped only if the file did not change while it was read, and is not racy.
            if after == item.key and size == after[0] and after[1] <= started_ns - RACY_NS:
                kept[item.relative] = [*after, sha256]
                stamped += 1
        if stamps_at and stamped:
            _write_stamps(stamps_at, root, kept)
    entries.sort(key=lambda entry: sort_key(entry[0]))
    return Digest(entries)


def _files(subject: _Subject, given: str) -> tuple[str, list[_Found]]:
    """The absolute path `given` with its symlinks resolved, and the regular files it holds."""
    root = os.path.realpath(given)
    try:
        status = os.stat(root)
    except FileNotFoundError:
        raise subject.error(f"{given} does not exist. {subject.missing_fix}") from None
    except OSError as error:
        raise subject.error(_unreadable(given, error)) from None
    if stat.S_ISREG(status.st_mode):
        return root, [_Found(os.path.basename(given), given, _key(status))]
    if stat.S_ISDIR(status.st_mode):
        return root, _walk(subject, given, root, status)
    raise subject.error(f"{given} is neither a folder nor a regular file. {subject.missing_fix}")


def _unreadable(path: str, error: OSError) -> str:
    reason = error.strerror or str(error)
    return (
        f"cannot read {path} ({reason}). Make it readable by this user (e.g. chmod u+r), or move "
        "it out of the folder: every file in it is part of the digest the run records."
    )


def _walk(subject: _Subject, given: str, root: str, status: os.stat_result) -> list[_Found]:
    """The regular files under the folder `given` (absolute), links followed; `root` is the
    folder with its symlinks resolved, the one links must stay in."""
    found: list[_Found] = []
    # Each folder to read: its path, its listed prefix, and the (device, inode) of the folders
    # above it and itself, to tell a loop.
    todo: list[tuple[str, str, frozenset[tuple[int, int]]]] = [
        (given, "", frozenset({(status.st_dev, status.st_ino)}))
    ]
    while todo:
        folder, prefix, above = todo.pop()
        try:
            with os.scandir(folder) as listing:
                children = list(listing)
        except OSError as error:
            raise subject.error(_unreadable(folder, error)) from None
        for entry in children:
            relative = prefix + entry.name
            try:
                if entry.is_symlink() and not subject.follow_links:
                    subject.links.append(link_entry(relative, os.readlink(entry.path)))
                    continue
                if entry.is_symlink():
                    item = _followed(subject, entry.path, root)
                elif entry.is_file(follow_symlinks=False) or entry.is_dir(follow_symlinks=False):
                    item = entry.stat(follow_symlinks=False)
                else:
                    continue  # a socket, FIFO or device is not content
            except FileNotFoundError:
                continue  # removed while the folder was read
            except OSError as error:
                raise subject.error(_unreadable(entry.path, error)) from None
            if stat.S_ISREG(item.st_mode):
                found.append(_Found(relative, entry.path, _key(item)))
            elif stat.S_ISDIR(item.st_mode):
                identity = (item.st_dev, item.st_ino)
                if identity in above:
                    raise subject.error(
                        f"{entry.path} is a symlink loop: it leads to "
                        f"{os.path.realpath(entry.path)}, a folder that holds it. Remove the "
                        "link: a program that walks the folder in the container would loop too."
                    )
                todo.append((entry.path, relative + "/", above | {identity}))
    return found


def link_entry(relative: str, target: str) -> Entry:
    """A symlink not followed, as an entry: its size and sha256 are its target text's, after
    `symlink:`, so it never equals a file's."""
    text = f"symlink:{target}".encode("utf-8", "surrogateescape")
    return (relative, len(text), hashlib.sha256(text).hexdigest())


def _followed(subject: _Subject, link: str, root: str) -> os.stat_result:
    """The status of what the symlink `link` leads to, which must be the folder `root` (symlinks
    resolved) or inside it."""
    try:
        status = os.stat(link)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise subject.error(
                f"{link} is a symlink loop: its links lead back to themselves. Remove the link "
                "or point it at a file."
            ) from None
        if isinstance(error, FileNotFoundError | NotADirectoryError):
            raise subject.error(
                f"{link} is a symlink to {os.readlink(link)}, which does not exist. Remove the "
                "link or restore its target: the container could not read it either."
            ) from None
        raise
    target = os.path.realpath(link)
    if target != root and not target.startswith(root.rstrip(os.sep) + os.sep):
        raise subject.error(
            f"{link} is a symlink to {target}, outside the folder; the container sees only the "
            "folder, so it could not read it there. Replace the link with a copy of its target, "
            "or give the folder that holds both."
        )
    return status


# Hashing.


class _Hasher:
    """Hashes files on up to WORKERS threads; each outcome is (size, sha256 hex, stat key after
    reading) or the OSError.

    A file of SHARED_FROM bytes or more is hashed on any thread, the largest first so that the
    threads end together: hashlib lets go of the GIL while it hashes a large buffer. Smaller ones
    are hashed one after the other on one thread, the first, which then joins the others: on
    small files a thread holds the GIL most of the time, and two would only take it in turns."""

    def __init__(self, paths: list[str], sizes: list[int]) -> None:
        self.paths = paths
        self.outcomes: list[tuple[int, str, Key] | OSError | None] = [None] * len(paths)
        large = [index for index, size in enumerate(sizes) if size >= SHARED_FROM]
        self.large = sorted(large, key=lambda index: sizes[index])  # taken from the end
        self.small = [index for index, size in enumerate(sizes) if size < SHARED_FROM]
        self.lock = threading.Lock()
        self.stopped = False
        self.done: list[int] = []  # bytes read, one slot per thread (one writer each)

    def run(
        self, total: int, progress: Progress | None
    ) -> list[tuple[int, str, Key] | OSError | None]:
        """Each file's outcome, None for those not read after one failed."""
        others = min(WORKERS, os.cpu_count() or 1, len(self.large) + 1) - 1
        self.done = [0] * (1 + others)
        threads = [threading.Thread(target=self._work, args=(0, self.small), daemon=True)]
        threads += [
            threading.Thread(target=self._work, args=(slot, []), daemon=True)
            for slot in range(1, 1 + others)
        ]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(PROGRESS_EVERY_S if progress else None)
                    if progress and thread.is_alive():
                        progress(sum(self.done), total)
        finally:
            self.stopped = True  # an interrupt: the threads stop at their next file
        if progress:
            done = sum(self.done)
            progress(done, max(done, total))
        return self.outcomes

    def _work(self, slot: int, first: list[int]) -> None:
        """Hash the files of `first` in order, then take large ones until none is left."""
        buffer = memoryview(bytearray(CHUNK))
        for index in first:
            if self.stopped or not self._hash(index, buffer, slot):
                return
        while not self.stopped:
            with self.lock:
                if not self.large:
                    return
                index = self.large.pop()
            if not self._hash(index, buffer, slot):
                return

    def _hash(self, index: int, buffer: memoryview, slot: int) -> bool:
        try:
            self.outcomes[index] = _hash_file(self.paths[index], buffer, self.done, slot)
        except OSError as error:
            self.outcomes[index] = error
            self.stopped = True
            return False
        return True


def _hash_file(path: str, buffer: memoryview, done: list[int], slot: int) -> tuple[int, str, Key]:
    """A file's size and sha256 as read, and its stat key once read; `done[slot]` counts the
    bytes. (os.open and os.readv: `open` would add an fstat and a file object per file.)"""
    digest = hashlib.sha256()
    size = 0
    descriptor = os.open(path, os.O_RDONLY)
    try:
        while count := os.readv(descriptor, [buffer]):
            digest.update(buffer[:count])
            size += count
            done[slot] += count
        after = os.fstat(descriptor)
    finally:
        os.close(descriptor)
    return size, digest.hexdigest(), _key(after)


# The stamp cache.


def _load_stamps(path: str, root: str) -> dict[str, list[Any]]:
    """The stamps of `root`: path -> [size, mtime_ns, ctime_ns, inode, device, sha256]. An
    unreadable or malformed file gives none (the files are hashed again); a malformed stamp is
    dropped."""
    try:
        with open(path, "rb") as handle:
            data = json.load(handle)
        if data["version"] != CACHE_VERSION or data["root"] != root:
            return {}
        stamps = data["files"]
        if not isinstance(stamps, dict):
            return {}
    except (OSError, ValueError, TypeError, KeyError):
        return {}
    return {path: stamp for path, stamp in stamps.items() if _well_formed(stamp)}


def _well_formed(stamp: object) -> bool:
    return (
        isinstance(stamp, list)
        and len(stamp) == 6
        and all(type(number) is int for number in stamp[:5])
        and isinstance(stamp[5], str)
        and len(stamp[5]) == 64
        and _HEX.issuperset(stamp[5])
    )


def _write_stamps(path: str, root: str, stamps: dict[str, list[Any]]) -> None:
    """Replace the stamp file atomically (a temp file in its folder, then os.replace); a failure
    leaves the cache as it was. No fsync: a cache lost or cut short by a crash is only ignored."""
    text = json.dumps(
        {"version": CACHE_VERSION, "root": root, "files": stamps}, separators=(",", ":")
    )
    folder = os.path.dirname(path)
    unique = f"{os.getpid()}.{os.urandom(4).hex()}"
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{unique}.tmp")
    try:
        os.makedirs(folder, exist_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with open(descriptor, "w", encoding="utf-8", errors="surrogateescape") as handle:
                handle.write(text)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError:
        pass  # no cache: the files are hashed again next time
