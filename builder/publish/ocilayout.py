"""An OCI image layout in one tar, written and read in a single pass.

The tar holds `oci-layout`, `index.json`, Docker's `manifest.json` (so that `docker load` takes
the file as it is, as skopeo's and `docker save`'s archives allow) and `blobs/sha256/<hex>`. Its
headers carry no time, owner or mode of this machine (mtime 0, root, 0644), so the same blobs
give the same archive bytes and the same sha256 to cite. Reading streams the file once: each
member's sha256, the archive's own, and the bytes of the small members (the JSON documents), so a
multi-gigabyte image is checked without unpacking it.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from builder.publish.artifacts import OCI_INDEX, Descriptor

if TYPE_CHECKING:
    from builder.publish.artifacts import Artifact

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
DOCKER_MANIFEST_FILE = "manifest.json"
BLOBS = "blobs/sha256/"
FOLDERS = ("blobs/", BLOBS)
LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"
CHUNK = 1 << 20
KEPT = 16 << 20  # members up to this size are kept in memory: the JSON, never a layer
FILE_MODE, FOLDER_MODE = 0o644, 0o755

Sink = Callable[[bytes], object]
Progress = Callable[[int], None]  # bytes written or read so far


def blob_name(digest: str) -> str:
    return BLOBS + digest.removeprefix("sha256:")


def header(name: str, size: int, *, folder: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = 0 if folder else size
    info.type = tarfile.DIRTYPE if folder else tarfile.REGTYPE
    info.mode = FOLDER_MODE if folder else FILE_MODE
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class TarWriter:
    """Writes members to `handle` and hashes everything written, to the last padding byte."""

    def __init__(self, handle: IO[bytes], progress: Progress | None = None) -> None:
        self._handle = handle
        self._hash = hashlib.sha256()
        self._progress = progress
        self.size = 0

    def _write(self, data: bytes) -> None:
        self._handle.write(data)
        self._hash.update(data)
        self.size += len(data)
        if self._progress is not None:
            self._progress(self.size)

    def folder(self, name: str) -> None:
        self._write(header(name, 0, folder=True))

    def add(self, name: str, data: bytes) -> None:
        def fill(sink: Sink) -> int:
            sink(data)
            return len(data)

        self.stream(name, len(data), fill)

    def stream(self, name: str, size: int, fill: Callable[[Sink], int]) -> None:
        """A member of `size` bytes that `fill` writes through the sink it is given."""
        self._write(header(name, size))
        written = fill(self._write)
        if written != size:
            raise ValueError(f"{name}: {written} bytes written, {size} announced")
        if remainder := size % tarfile.BLOCKSIZE:
            self._write(bytes(tarfile.BLOCKSIZE - remainder))

    def close(self) -> str:
        """End the archive as tar does (two zero blocks, padded to a whole record); its sha256."""
        self._write(bytes(2 * tarfile.BLOCKSIZE))
        if remainder := self.size % tarfile.RECORDSIZE:
            self._write(bytes(tarfile.RECORDSIZE - remainder))
        return f"sha256:{self._hash.hexdigest()}"


def index(image: Descriptor, artifacts: list[Artifact], ref_name: str, image_name: str) -> bytes:
    """index.json: the image under its tag's name, then each artifact under its kind's name."""
    named: Descriptor = {**image, "annotations": {REF_NAME: ref_name, IMAGE_NAME: image_name}}
    manifests = [named]
    for item in artifacts:
        descriptor = item.descriptor()
        descriptor["annotations"] = {
            **descriptor.get("annotations", {}),
            REF_NAME: f"reprobuild.{item.document.kind.name}",
        }
        manifests.append(descriptor)
    document = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    return json.dumps(document, sort_keys=True, indent=2).encode() + b"\n"


def docker_manifest(config: str, layers: list[str], repo_tag: str) -> bytes:
    """Docker's manifest.json, naming the same blobs: `docker load` reads this one."""
    entry = {
        "Config": blob_name(config),
        "RepoTags": [repo_tag],
        "Layers": [blob_name(layer) for layer in layers],
    }
    return json.dumps([entry], sort_keys=True, indent=2).encode() + b"\n"


@dataclass
class Member:
    name: str
    size: int
    digest: str  # sha256 of its content
    data: bytes | None  # the content, for members up to KEPT bytes
    canonical: bool  # its header is one TarWriter writes
    folder: bool
    offset: int  # where its content starts in the file


@dataclass
class Contents:
    members: list[Member] = field(default_factory=list)
    sha256: str = ""  # of the whole file
    size: int = 0
    broken: str | None = None  # where and why the tar could not be read to its end

    def named(self, name: str) -> Member | None:
        return next((member for member in self.members if member.name == name), None)

    def blob(self, digest: str) -> Member | None:
        return self.named(blob_name(digest))


class _Hashing:
    """A file read through this is hashed, byte for byte, in the order it is read."""

    def __init__(self, handle: IO[bytes], progress: Progress | None) -> None:
        self._handle = handle
        self._progress = progress
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self.hash.update(data)
        self.size += len(data)
        if self._progress is not None:
            self._progress(self.size)
        return data


def read(path: Path, progress: Progress | None = None) -> Contents:
    """Every member's sha256 and header check, and the archive's sha256, in one pass; OSError
    when the file cannot be read."""
    contents = Contents()
    with path.open("rb") as handle:
        hashing = _Hashing(handle, progress)
        try:
            with tarfile.open(fileobj=hashing, mode="r|", bufsize=CHUNK) as archive:  # type: ignore[call-overload]
                for info in archive:
                    contents.members.append(_member(archive, info))
        except (tarfile.TarError, EOFError, ValueError) as error:
            contents.broken = f"the tar breaks off after {hashing.size} bytes ({error})"
        while hashing.read(CHUNK):
            pass
        contents.broken = contents.broken or _after_the_end(handle, _end(contents.members))
    contents.sha256, contents.size = f"sha256:{hashing.hash.hexdigest()}", hashing.size
    return contents


def _end(members: list[Member]) -> int:
    """Where the last member's content ends, padded to a whole block."""
    if not members:
        return 0
    last = members[-1]
    return last.offset + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _after_the_end(handle: IO[bytes], end: int) -> str | None:
    """Why the bytes after the last member are not the zeros that end a tar (tar stops at a
    header it cannot read, as at the end: a changed header hides what follows); None if they
    are."""
    handle.seek(end)
    position = end
    while chunk := handle.read(CHUNK):
        if chunk.count(0) != len(chunk):
            at = position + next(i for i, byte in enumerate(chunk) if byte)
            return (
                f"the tar breaks off at byte {end}: a header there cannot be read (changed?), "
                f"and byte {at} after it is not the zeros that end a tar"
            )
        position += len(chunk)
    return None


def _member(archive: tarfile.TarFile, info: tarfile.TarInfo) -> Member:
    content = hashlib.sha256()
    kept: list[bytes] = []
    if info.isfile():
        for chunk in _chunks(archive, info):
            content.update(chunk)
            if info.size <= KEPT:
                kept.append(chunk)
    data = b"".join(kept) if info.isfile() and info.size <= KEPT else None
    return Member(
        info.name,
        info.size,
        f"sha256:{content.hexdigest()}",
        data,
        _canonical(info),
        info.isdir(),
        info.offset_data,
    )


def _chunks(archive: tarfile.TarFile, info: tarfile.TarInfo) -> Iterator[bytes]:
    reader = archive.extractfile(info)
    if reader is None:
        return
    while chunk := reader.read(CHUNK):
        yield chunk


def _canonical(info: tarfile.TarInfo) -> bool:
    mode = FOLDER_MODE if info.isdir() else FILE_MODE
    return (
        (info.isfile() or info.isdir())
        and (info.mode, info.mtime, info.uid, info.gid) == (mode, 0, 0, 0)
        and (info.uname, info.gname) == ("", "")
    )


def json_of(member: Member | None) -> Any:
    """A kept member's JSON, or None when it is missing, too large or not JSON."""
    if member is None or member.data is None:
        return None
    try:
        return json.loads(member.data)
    except (ValueError, RecursionError):
        return None
