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
from datetime import datetime, timezone
from typing import IO, Any, Literal

from builder import tarstream
from builder.cli.present import count
from builder.engine import sdk as engine
from builder.engine.sdk import EngineError

CLIP = 120
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


class MissingImage(EngineError):
    """An image named on the command line is not in the engine: a usage error."""

    exit_code = 2


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


def diff_images(client: Any, image_a: str, image_b: str) -> ImageDiff:
    """Compare two images in the engine; MissingImage when either is not there."""
    inspected_a, inspected_b = _inspect(client, image_a), _inspect(client, image_b)
    id_a, id_b = str(inspected_a["Id"]), str(inspected_b["Id"])
    layers = compare_layers(_diff_ids(inspected_a), _diff_ids(inspected_b))
    if id_a == id_b:
        return ImageDiff(image_a, image_b, id_a, id_b, [], layers, None, [])
    first = first_difference(layers)
    wanted_a = layers[first].a if first is not None else None
    wanted_b = layers[first].b if first is not None else None
    saved_a = read_saved(client, image_a, id_a, first, wanted_a)
    saved_b = read_saved(client, image_b, id_b, first, wanted_b)
    files = compare_entries(saved_a.layer, saved_b.layer) if first is not None else []
    config = compare_config(saved_a.config, saved_b.config)
    return ImageDiff(image_a, image_b, id_a, id_b, config, layers, first, files)


def _inspect(client: Any, reference: str) -> dict[str, Any]:
    try:
        return engine.inspect_image(client, reference)
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
    client: Any, reference: str, image_id: str, index: int | None, diff_id: str | None
) -> Saved:
    """Stream `docker save` once; keep the config and the entries of layer `index`.

    Every layer tar is hashed as it streams, and only those whose digest is `diff_id` keep their
    entry table; the manifest, last in the stream, then says which member is layer `index`.
    """
    # Saved by ID: a tag moved between inspect and save cannot swap the image under us.
    with engine.saved_members(client, image_id) as archive:
        export = _read_export(archive, image_id.removeprefix("sha256:"), diff_id)
    if export.config is None:
        raise EngineError(
            f"the engine's export of {reference} holds no config {image_id}. {engine.DAMAGED}"
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
            f"{engine.DAMAGED}"
        )
    name = posixpath.normpath(names[index])
    name = export.links.get(name, name)
    table = export.tables.get(name)
    if table is None:
        raise EngineError(
            f"layer {index} ({name}) in the engine's export of {reference} does not hash to its "
            f"diff ID {diff_id}. {engine.DAMAGED}"
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


def render(report: ImageDiff, max_files: int = 200) -> str:
    """The report as plain text; at most `max_files` file lines (0: all of them)."""
    names = [f"A: {report.image_a} ({_short(report.id_a)})"]
    names.append(f"B: {report.image_b} ({_short(report.id_b)})")
    if report.identical:
        return "\n".join([*names, "identical: both names are the same image"])
    sections = [names, _config_lines(report), _layer_lines(report), _file_lines(report, max_files)]
    return "\n\n".join("\n".join(lines) for lines in sections)


def _config_lines(report: ImageDiff) -> list[str]:
    if not report.config:
        return ["config: the same fields and values (the documents differ only in encoding)"]
    lines = [f"config: {count(len(report.config), 'field')} differ"]
    for difference in report.config:
        lines.append(f"  {difference.path}")
        lines += [f"    A: {_value(difference.a)}", f"    B: {_value(difference.b)}"]
    return lines


def _value(text: str | None) -> str:
    if text is None:
        return "(absent)"
    return text if len(text) <= CLIP else text[: CLIP - 3] + "..."


def _layer_lines(report: ImageDiff) -> list[str]:
    count_a = sum(layer.a is not None for layer in report.layers)
    count_b = sum(layer.b is not None for layer in report.layers)
    counts = f"A has {count_a}, B has {count_b}"
    differing = sum(not layer.equal for layer in report.layers)
    lines = [f"layers: {counts}; {differing} of {len(report.layers)} differ"]
    for layer in report.layers:
        if layer.equal:
            lines.append(f"  [{layer.index}] same     {_short(layer.a)}")
        else:
            lines.append(f"  [{layer.index}] differs  A {_short(layer.a)}  B {_short(layer.b)}")
    return lines


def _file_lines(report: ImageDiff, max_files: int) -> list[str]:
    if report.first_differing_layer is None:
        return ["files: every layer is the same; only the config differs"]
    index = report.first_differing_layer
    header = f"files in layer {index}, the first that differs: "
    if not report.files:
        return [header + "the same entries (the tars differ in order or padding)"]
    lines = [header + f"{count(len(report.files), 'path')} differ"]
    shown = report.files if max_files == 0 else report.files[:max_files]
    lines += [_file_line(difference) for difference in shown]
    if len(shown) < len(report.files):
        lines.append(f"  ... {len(report.files) - len(shown)} more (--max-files 0 lists all)")
    return lines


def _file_line(difference: FileDifference) -> str:
    if difference.kind != "changed" or difference.a is None or difference.b is None:
        return f"  {difference.kind:<9}  {difference.path}"
    changes = "; ".join(
        f"{name}: {_attribute(difference.a, name)} -> {_attribute(difference.b, name)}"
        for name in difference.attributes
    )
    return f"  changed    {difference.path}  {changes}"


def _attribute(entry: Entry, name: str) -> str:
    value = getattr(entry, name)
    if name == "mode":
        return f"{value:04o}"
    if name == "mtime":
        return _time(value)
    if name == "content":
        return _short(value) if value else "(none)"
    return _value(json.dumps(value) if name in ("linkname", "xattrs") else str(value))


def _time(mtime: float) -> str:
    try:
        moment = datetime.fromtimestamp(mtime, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return str(mtime)
    # Sub-second differences come from PAX headers; keep them visible.
    spec = "seconds" if mtime == int(mtime) else "microseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def _short(digest: str | None) -> str:
    if digest is None:
        return "(none)"
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:12]}" if hexdigest else digest[:12]
