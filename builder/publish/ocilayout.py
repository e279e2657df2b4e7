"""An OCI image layout in one tar, written and read in a single pass.

The tar holds `oci-layout`, `index.json`, Docker's `manifest.json` (so that `docker load` takes
the file as it is, as skopeo's and `docker save`'s archives allow) and `blobs/sha256/<hex>`. Its
headers carry no time, owner or mode of this machine (mtime 0, root, 0644), so the same blobs
give the same archive bytes and the same sha256 to cite. Reading streams the file once: each
member's sha256, the archive's own, and the bytes of the small members (the JSON documents), so a
multi-gigabyte image is checked without unpacking it.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from builder import tarstream
from builder.engine.registry import OCI_INDEX
from builder.errors import ArchiveError
from builder.publish.artifacts import Descriptor

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
KEPT = 16 << 20  # members up to this size are kept in memory: the JSON, never a layer
FILE_MODE, FOLDER_MODE = 0o644, 0o755  # as TarWriter writes them

Sink = Callable[[bytes], object]
Progress = Callable[[int], None]  # bytes written or read so far


def blob_name(digest: str) -> str:
    return BLOBS + digest.removeprefix("sha256:")


def header(name: str, size: int, *, folder: bool = False) -> bytes:
    info = tarstream.file_info(name, size)  # TarInfo's defaults: mtime 0, root, 0644
    if folder:
        info.type, info.mode = tarfile.DIRTYPE, FOLDER_MODE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class TarWriter:
    """Writes members to `handle` and hashes everything written, to the last padding byte."""

    def __init__(self, handle: IO[bytes], progress: Progress | None = None) -> None:
        self._out = tarstream.HashingWriter(handle)
        self._progress = progress

    @property
    def size(self) -> int:
        return self._out.size

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        if self._progress is not None:
            self._progress(self._out.size)

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
            raise ArchiveError(
                f"{name}: the registry sent {written} bytes where the image's manifest says "
                f"{size}: the image is damaged in the registry. Push it again, then publish."
            )
        if remainder := size % tarfile.BLOCKSIZE:
            self._write(bytes(tarfile.BLOCKSIZE - remainder))

    def close(self) -> str:
        """End the archive as tar does (two zero blocks, padded to a whole record); its sha256."""
        self._write(tarstream.END)
        if remainder := self.size % tarfile.RECORDSIZE:
            self._write(bytes(tarfile.RECORDSIZE - remainder))
        return f"sha256:{self._out.digest.hexdigest()}"


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


def read(path: Path, progress: Progress | None = None) -> Contents:
    """Every member's sha256 and header check, and the archive's sha256, in one pass; OSError
    when the file cannot be read."""
    contents = Contents()
    with path.open("rb") as handle:
        hashing = tarstream.HashingReader(handle, progress)
        try:
            with tarfile.open(fileobj=hashing, mode="r|", bufsize=tarstream.BLOCK) as archive:  # type: ignore[call-overload]
                for info in archive:
                    contents.members.append(_member(archive, info))
        except (tarfile.TarError, EOFError, ValueError) as error:
            contents.broken = f"the tar breaks off after {hashing.size} bytes ({error})"
        hashing.drain()
        contents.broken = contents.broken or _after_the_end(handle, _end(contents.members))
    contents.sha256, contents.size = f"sha256:{hashing.digest.hexdigest()}", hashing.size
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
    while chunk := handle.read(tarstream.BLOCK):
        if chunk.count(0) != len(chunk):
            at = position + next(i for i, byte in enumerate(chunk) if byte)
            return (
                f"the tar breaks off at byte {end}: a header there cannot be read (changed?), "
                f"and byte {at} after it is not the zeros that end a tar"
            )
        position += len(chunk)
    return None


def _member(archive: tarfile.TarFile, info: tarfile.TarInfo) -> Member:
    reader = archive.extractfile(info) if info.isfile() else None
    content = tarstream.HashingReader(reader or io.BytesIO())
    kept = [block for block in tarstream.blocks(content) if info.size <= KEPT]  # type: ignore[arg-type]
    return Member(
        info.name,
        info.size,
        f"sha256:{content.digest.hexdigest()}",
        b"".join(kept) if reader is not None and info.size <= KEPT else None,
        _canonical(info),
        info.isdir(),
        info.offset_data,
    )


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
