"""What `publish` hands on beside the manifest: the documents a deposit needs (the lock, the
SBOM, the provenance, their signatures), and the files that cite the image and its archive
(CITATION.cff, .zenodo.json, the archive's sha256 in `sha256sum -c` form).

The archive's own sha256 cannot be written inside it, so the provenance that names the archive
as a subject (with the image) is written beside it; the one inside names the image.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from builder import files, layout, source
from builder.publish import archive, artifacts, provenance, referrers, sbom, signing
from builder.publish.artifacts import BY_NAME, Document
from builder.reference import ImageReference

if TYPE_CHECKING:
    from builder.build.buildrecord import BuildRecord
    from builder.lock.lockfile import CurrentLock
    from builder.publish.publish import Cited, Manifest
    from builder.publish.signing import SigningKey

MARK = "reprobuild publish"  # in the files it writes; one without it is the author's own
OUTER_PROVENANCE = "provenance.archive.intoto.json"
OUTER_SIGNATURE = "provenance.archive.dsse.json"


@dataclass(frozen=True)
class Published:
    """The manifest and what goes with it, as bytes."""

    documents: list[Document]
    record: BuildRecord
    current: CurrentLock
    key: SigningKey | None


def documents(
    document: Manifest, current: CurrentLock, record: BuildRecord, key: SigningKey | None
) -> Published:
    """The manifest, the lock, the SBOM and the provenance of the image; with `key`, a DSSE
    signature of the manifest and of the provenance."""
    from builder.publish import publish

    manifest = publish.dumps(document).encode()
    name = ImageReference.parse(str(record.pushed)).written_name
    digest = str(record.manifest_digest)
    made = [
        Document(BY_NAME["manifest"], manifest),
        Document(BY_NAME["lock"], current.text.encode()),
        Document(
            BY_NAME["sbom"],
            sbom.sbom(
                current.lock.on_or_first(record.platform),
                image_name=name,
                manifest_digest=digest,
                timestamp=document["published"],
            ),
        ),
        Document(BY_NAME["provenance"], _statement(current, record, [_image_subject(record)])),
    ]
    if key is not None:
        made += [_signature(kind, made, key) for kind in artifacts.KINDS if kind.signs]
    return Published(made, record, current, key)


def _image_subject(record: BuildRecord) -> provenance.Subject:
    name = ImageReference.parse(str(record.pushed)).written_name
    return provenance.Subject(name, str(record.manifest_digest).removeprefix("sha256:"))


def _statement(
    current: CurrentLock, record: BuildRecord, subjects: list[provenance.Subject]
) -> bytes:
    return provenance.statement(
        current.lock.on_or_first(record.platform),
        lock_digest=current.digest,
        lock_path=current.path.name,
        record=record,
        subjects=subjects,
        templates=provenance.template_digests(current.project),
    )


def _signature(kind: artifacts.Kind, made: list[Document], key: SigningKey) -> Document:
    signed = next(document for document in made if document.kind.name == kind.signs)
    return Document(kind, signing.sign(signed.data, signed.kind.media_type, key))


def beside_archive(
    published: Published, archive: Cited, key: SigningKey | None
) -> dict[str, bytes]:
    """The files written next to the archive: its sha256 (`sha256sum -c`), and a provenance
    naming the image and the archive (signed with `key`)."""
    subjects = [
        _image_subject(published.record),
        provenance.Subject(archive.name, archive.sha256.removeprefix("sha256:")),
    ]
    statement = _statement(published.current, published.record, subjects)
    written = {
        f"{archive.name}.sha256": _sha256_line(archive),
        OUTER_PROVENANCE: statement,
    }
    if key is not None:
        written[OUTER_SIGNATURE] = signing.sign(statement, provenance.MEDIA_TYPE, key)
    return written


def _sha256_line(archive: Cited) -> bytes:
    """What `sha256sum -c` reads: the digest, two spaces, the file's name."""
    return f"{archive.sha256.removeprefix('sha256:')}  {archive.name}\n".encode()


def author(published: Published) -> str | None:
    commit = published.record.git_commit
    return source.commit_author(published.current.project, commit) if commit else None


def citation(document: Manifest, archive: Cited | None, author_name: str | None) -> str:
    """A whole CITATION.cff (CFF 1.2.0) naming the image by digest, and the archive by sha256."""
    from builder.publish import publish

    name, image = document["name"], document["image"]
    summary, lock_digest = publish.summary_text(document["resolution"]), document["lock"]["digest"]
    authors = (
        f"  - name: {json.dumps(author_name)}\n"
        if author_name
        else f"  - name: {json.dumps(f'{name} authors')}  # who should be cited: edit\n"
    )
    lines = [
        f"# Written by {MARK}; rewritten by the next publish (remove this line to keep edits).",
        "cff-version: 1.2.0",
        'message: "If you use this training environment, please cite it as below."',
        "type: software",
        f"title: {json.dumps(f'{name}: training image ({summary})')}",
        "authors:",
        authors.rstrip("\n"),
        "identifiers:",
        "  - type: other",
        f"    value: {json.dumps(image['reference'])}",
        f"    description: {json.dumps(f'Container image by digest (lock {lock_digest})')}",
    ]
    if archive is not None:
        described = f"sha256 of {archive.name}: the image as an OCI archive"
        lines += [
            "  - type: other",
            f"    value: {json.dumps(archive.sha256)}",
            f"    description: {json.dumps(described)}",
        ]
    return "\n".join(lines) + "\n"


def zenodo(document: Manifest, archive: Cited | None, author_name: str | None) -> str:
    """.zenodo.json: what a Zenodo deposit of the archive says, with the digests."""
    from builder.publish import publish

    name, image = document["name"], document["image"]
    digests = [
        f"image {image['reference']}",
        f"config {image['config_digest']}",
        f"lock {document['lock']['digest']}",
    ]
    if archive is not None:
        digests.append(f"archive {archive.name} {archive.sha256}")
    metadata = {
        "title": f"{name}: training image ({publish.summary_text(document['resolution'])})",
        "upload_type": "software",
        "description": (
            "The container image a paper's training ran in, as an OCI image archive with its "
            "manifest, lock, SBOM, provenance and signatures. Check it offline with "
            f"`reprobuild verify {archive.name if archive else layout.MANIFEST_FILE}`."
        ),
        "creators": [{"name": author_name or f"{name} authors"}],
        "keywords": ["reproducibility", "container image", "OCI", "machine learning"],
        "notes": f"Written by {MARK}. Digests: " + "; ".join(digests) + ".",
    }
    return json.dumps(metadata, indent=2, ensure_ascii=False) + "\n"


def ours(path: Path) -> bool:
    """Whether `path` is absent or was written by publish (an author's own file is kept)."""
    try:
        return MARK in path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class HandedOn:
    """What `hand_on` did: the documents pushed, the archive written."""

    published: Published
    via: str  # how readers find the documents in the registry
    archive: Path | None
    cited: Cited | None
    beside_archive: dict[str, bytes]


def hand_on(
    published: Published, archive_path: Path | None, progress: archive.Progress | None
) -> HandedOn:
    """Push the documents beside the image as artifacts that refer to it, and write the
    archive when asked."""
    from builder.engine.registry import RegistryClient
    from builder.publish.publish import Cited

    record = published.record
    with RegistryClient() as registry:
        image = archive.fetch_image(registry, str(record.pushed))
        _carried, via = referrers.push(
            registry, image.reference, image.descriptor, published.documents
        )
        if archive_path is None:
            return HandedOn(published, via, None, None, {})
        repo_tag = str(record.pushed_tag or record.pushed)
        written = archive.write(
            archive_path,
            registry,
            image,
            documents=published.documents,
            repo_tag=repo_tag,
            progress=progress,
        )
    tag = ImageReference.parse(repo_tag).tag or "latest"
    cited = Cited(archive_path.name, written.sha256, written.size, tag)
    outside = beside_archive(published, cited, published.key)
    return HandedOn(published, via, archive_path, cited, outside)


def write_beside(
    folder: Path, document: Manifest, handed: HandedOn, note: Callable[[str], None]
) -> list[Path]:
    """The SBOM, the provenance and the signatures, CITATION.cff and .zenodo.json (unless the
    author's own are there) into `folder`; the archive's sha256 and the provenance naming it
    beside the archive. The paths written."""
    named = {
        item.kind.filename: item.data
        for item in handed.published.documents
        if item.kind.name not in ("manifest", "lock")  # written by publish, and the project's
    }
    author_name = author(handed.published)
    for name, text in (
        (layout.CITATION_FILE, citation(document, handed.cited, author_name)),
        (layout.ZENODO_FILE, zenodo(document, handed.cited, author_name)),
    ):
        if ours(folder / name):
            named[name] = text.encode()
        else:
            note(f"{folder / name} is your own, so it is kept: add the image's digest to it")
    written = _write_files(folder, named, "give -o a folder you can write to.")
    if handed.archive is not None:
        remedy = "give --archive a folder you can write to."
        written += _write_files(handed.archive.parent, handed.beside_archive, remedy)
    return written


def _write_files(folder: Path, named: dict[str, bytes], remedy: str) -> list[Path]:
    written = []
    for name, data in named.items():
        files.write_output(folder / name, data, remedy)
        written.append(folder / name)
    return written


@dataclass(frozen=True)
class Deposited:
    """What `deposit` wrote and pushed: the manifest, REPRODUCE.md and the files beside them."""

    manifest: Path
    reproduce: Path
    beside: list[Path]
    handed: HandedOn


def deposit(
    folder: Path,
    document: Manifest,
    current: CurrentLock,
    *,
    key: SigningKey | None,
    archive_path: Path | None,
    progress: archive.Progress | None,
    note: Callable[[str], None],
) -> Deposited:
    """After `publish.prepare` pushed the build: its documents beside the image, the archive
    when asked, the manifest and REPRODUCE.md, and the files that cite them, into `folder`."""
    from builder.build import buildrecord
    from builder.publish import publish

    record = buildrecord.read(current.project)  # as prepare pushed it
    handed = hand_on(documents(document, current, record, key), archive_path, progress)
    manifest_path, reproduce_path = publish.write(folder, document, handed.cited)
    return Deposited(
        manifest_path, reproduce_path, write_beside(folder, document, handed, note), handed
    )
