"""Why two images in the local engine differ: config fields, layer diff IDs, and the files of the
first layer pair that differs.

Images are read as the engine's `docker save` stream, never written out: each layer's entries
are reduced to their tar header fields and a sha256 of their contents while the bytes go past.
"""

from __future__ import annotations

import json
import posixpath
import re
import tarfile
from dataclasses import dataclass, field, fields
from typing import IO, Any, Literal

from builder import tarstream
from builder.engine.sdk import DAMAGED, Engine
from builder.errors import EngineError, MissingImage

XATTR_PREFIXES = ("SCHILY.xattr.", "LIBARCHIVE.xattr.")
TYPES = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.CONTTYPE: "file",
    tarfile.DIRTYPE: "directory",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "fifo",
}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class FieldDifference:
    """One config field whose JSON values differ; None where the field is absent."""

    path: str
    a: str | None
    b: str | None


@dataclass(frozen=True)
class LayerComparison:
    """The diff IDs at one layer index; None where that image has fewer layers."""

    index: int
    a: str | None
    b: str | None

    @property
    def equal(self) -> bool:
        return self.a == self.b


@dataclass(frozen=True)
class Entry:
    """What a layer says about one path. Field names are the attribute names reported."""

    type: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime: float
    linkname: str
    xattrs: tuple[tuple[str, str], ...]
    content: str  # sha256 of a regular file's bytes, "" for every other type

    def differing(self, other: Entry) -> tuple[str, ...]:
        names = (attribute.name for attribute in fields(self))
        return tuple(name for name in names if getattr(self, name) != getattr(other, name))


EntryTable = dict[str, Entry]
FileKind = Literal["only in A", "only in B", "changed"]


@dataclass(frozen=True)
class FileDifference:
    path: str
    kind: FileKind
    attributes: tuple[str, ...]  # for "changed": which Entry fields differ
    a: Entry | None
    b: Entry | None


@dataclass(frozen=True)
class ImageDiff:
    image_a: str
    image_b: str
    id_a: str
    id_b: str
    config: list[FieldDifference]
    layers: list[LayerComparison]
    first_differing_layer: int | None
    files: list[FileDifference]

    @property
    def identical(self) -> bool:
        return self.id_a == self.id_b


def diff_images(engine: Engine, image_a: str, image_b: str) -> ImageDiff:
    """Compare two images in the engine; MissingImage when either is not there."""
    inspected_a, inspected_b = _inspect(engine, image_a), _inspect(engine, image_b)
    id_a, id_b = str(inspected_a["Id"]), str(inspected_b["Id"])
    layers = compare_layers(_diff_ids(inspected_a), _diff_ids(inspected_b))
    if id_a == id_b:
        return ImageDiff(image_a, image_b, id_a, id_b, [], layers, None, [])
    first = first_difference(layers)
    wanted_a = layers[first].a if first is not None else None
    wanted_b = layers[first].b if first is not None else None
    saved_a = read_saved(engine, image_a, id_a, first, wanted_a)
    saved_b = read_saved(engine, image_b, id_b, first, wanted_b)
    files = compare_entries(saved_a.layer, saved_b.layer) if first is not None else []
    config = compare_config(saved_a.config, saved_b.config)
    return ImageDiff(image_a, image_b, id_a, id_b, config, layers, first, files)


def _inspect(engine: Engine, reference: str) -> dict[str, Any]:
    try:
        return engine.inspect_image(reference)
    except EngineError as error:
        raise MissingImage(str(error)) from None


def _diff_ids(inspected: dict[str, Any]) -> list[str]:
    return [str(layer) for layer in (inspected.get("RootFS") or {}).get("Layers") or []]


def compare_layers(a: list[str], b: list[str]) -> list[LayerComparison]:
    count = max(len(a), len(b))
    return [LayerComparison(i, _at(a, i), _at(b, i)) for i in range(count)]


def _at(items: list[str], index: int) -> str | None:
    return items[index] if index < len(items) else None


def first_difference(layers: list[LayerComparison]) -> int | None:
    return next((layer.index for layer in layers if not layer.equal), None)


_ABSENT = object()


def compare_config(a: Any, b: Any, path: str = "") -> list[FieldDifference]:
    """Every leaf where two JSON documents differ, as dotted paths: `config.Env[3]`."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(a.keys() | b.keys())
        return [
            difference
            for key in keys
            for difference in compare_config(
                a.get(key, _ABSENT), b.get(key, _ABSENT), _key_path(path, key)
            )
        ]
    if isinstance(a, list) and isinstance(b, list):
        return [
            difference
            for i in range(max(len(a), len(b)))
            for difference in compare_config(
                a[i] if i < len(a) else _ABSENT, b[i] if i < len(b) else _ABSENT, f"{path}[{i}]"
            )
        ]
    # type() first: in Python 1 == True and 1 == 1.0, in JSON they are different values.
    if type(a) is type(b) and a == b:
        return []
    return [FieldDifference(path or "(document)", _json(a), _json(b))]


def _key_path(path: str, key: str) -> str:
    # Label and port keys hold dots and slashes; quote them so the path stays unambiguous.
    step = key if _IDENTIFIER.fullmatch(key) else f"[{json.dumps(key)}]"
    if not path or step.startswith("["):
        return f"{path}{step}"
    return f"{path}.{step}"


def _json(value: Any) -> str | None:
    return None if value is _ABSENT else json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class Saved:
    """What one pass over an image's export keeps: its config and one layer's entries."""

    config: dict[str, Any]
    layer: EntryTable


@dataclass
class _Export:
    config: dict[str, Any] | None = None
    manifest: list[dict[str, Any]] | None = None
    tables: dict[str, EntryTable] = field(default_factory=dict)  # layer member -> entries
    links: dict[str, str] = field(default_factory=dict)  # symlinked member -> its target


def read_saved(
    engine: Engine, reference: str, image_id: str, index: int | None, diff_id: str | None
) -> Saved:
    """Stream `docker save` once; keep the config and the entries of layer `index`.

    Every layer tar is hashed as it streams, and only those whose digest is `diff_id` keep their
    entry table; the manifest, last in the stream, then says which member is layer `index`.
    """
    # Saved by ID: a tag moved between inspect and save cannot swap the image under us.
    with engine.saved_members(image_id) as archive:
        export = _read_export(archive, image_id.removeprefix("sha256:"), diff_id)
    if export.config is None:
        raise EngineError(
            f"the engine's export of {reference} holds no config {image_id}. {DAMAGED}"
        )
    if index is None or diff_id is None:
        return Saved(export.config, {})
    return Saved(export.config, _layer_at(export, reference, index, diff_id))


def _read_export(archive: tarfile.TarFile, config_hex: str, diff_id: str | None) -> _Export:
    export = _Export()
    for member in archive:
        name = posixpath.normpath(member.name)
        if member.issym():  # newer engines link a repeated layer to its first copy
            target = posixpath.join(posixpath.dirname(name), member.linkname)
            export.links[name] = posixpath.normpath(target)
        handle = archive.extractfile(member) if member.isreg() else None
        if handle is None:
            continue
        basename = posixpath.basename(name)
        if name == "manifest.json":
            export.manifest = json.load(handle)
        elif basename in (f"{config_hex}.json", config_hex):
            export.config = json.load(handle)
        elif diff_id is not None and _may_be_layer(basename, diff_id):
            digest, table = scan_layer(handle)
            if digest == diff_id:
                export.tables[name] = table
    return export


def _may_be_layer(basename: str, diff_id: str) -> bool:
    # Legacy exports name layers <v1 id>/layer.tar; OCI exports name them by their digest.
    return basename == "layer.tar" or basename == diff_id.removeprefix("sha256:")


def _layer_at(export: _Export, reference: str, index: int, diff_id: str) -> EntryTable:
    names = (export.manifest or [{}])[0].get("Layers") or []
    if index >= len(names):
        raise EngineError(
            f"the engine's export of {reference} lists {len(names)} layers, not {index + 1}. "
            f"{DAMAGED}"
        )
    name = posixpath.normpath(names[index])
    name = export.links.get(name, name)
    table = export.tables.get(name)
    if table is None:
        raise EngineError(
            f"layer {index} ({name}) in the engine's export of {reference} does not hash to its "
            f"diff ID {diff_id}. {DAMAGED}"
        )
    return table


def scan_layer(layer: IO[bytes]) -> tuple[str, EntryTable]:
    """A layer tar's digest (its diff ID) and its entries by path, contents hashed in blocks."""
    table: EntryTable = {}

    def record(member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        table[_path(member.name)] = _entry(member, archive)

    diff_id, _ = tarstream.read_layer(layer, record)
    return diff_id, table


def _path(name: str) -> str:
    return name.removeprefix("./").rstrip("/") or "."


def _entry(member: tarfile.TarInfo, archive: tarfile.TarFile) -> Entry:
    xattrs = tuple(
        sorted(
            (key, value)
            for key, value in member.pax_headers.items()
            if key.startswith(XATTR_PREFIXES)
        )
    )
    return Entry(
        type=TYPES.get(member.type, f"type {member.type!r}"),
        mode=member.mode,
        uid=member.uid,
        gid=member.gid,
        size=member.size,
        mtime=member.mtime,
        linkname=member.linkname,
        xattrs=xattrs,
        content=_content_digest(archive, member),
    )


def _content_digest(archive: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    handle = archive.extractfile(member) if member.isreg() else None
    if handle is None:
        return ""
    return f"sha256:{tarstream.sha256_stream(handle)}"


def compare_entries(a: EntryTable, b: EntryTable) -> list[FileDifference]:
    """Paths only in one table, and paths in both whose entries differ, sorted by path."""
    differences: list[FileDifference] = []
    for path in sorted(a.keys() | b.keys()):
        old, new = a.get(path), b.get(path)
        if new is None:
            differences.append(FileDifference(path, "only in A", (), old, None))
        elif old is None:
            differences.append(FileDifference(path, "only in B", (), None, new))
        elif attributes := old.differing(new):
            differences.append(FileDifference(path, "changed", attributes, old, new))
    return differences
