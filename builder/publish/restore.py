"""`reprobuild restore ARCHIVE --to REF`: the archived image back in a registry, same digest.

The archive is judged first, offline, as `verify --no-smoke` judges it: a damaged one is
refused before anything is pushed. Then its blobs are streamed from the file to the registry
(each skipped where the registry has it), its manifest is pushed as the very bytes it holds (so
the manifest digest is the published one), and its documents are pushed beside it as artifacts
that refer to it, found as `verify IMAGE@DIGEST` finds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import ArchiveError, RegistryError
from builder.publish import ocilayout, referrers, verifyarchive
from builder.publish.artifacts import Descriptor, Document
from builder.reference import ImageReference

if TYPE_CHECKING:
    from builder.engine.registry import RegistryClient
    from builder.publish.ocilayout import Contents
    from builder.publish.verifyarchive import Held


# The checks that say the image's bytes are whole; a document's own check (SBOM, provenance,
# signatures) is verify's to report: restore puts back what the archive holds.
INTACT = ("tar", "blobs", "manifest", "image", "layout")


@dataclass(frozen=True)
class Restored:
    pushed: str  # name@sha256:... as the registry now serves it
    tag: str | None
    blobs: int
    documents: list[str]
    via: str  # how readers find the documents: "referrers API" or "tag schema"


def target(text: str) -> ImageReference:
    """Where to restore to: a name with a tag or without (then `latest`), never a digest (the
    digest is the archive's)."""
    reference = ImageReference.parse(text)
    if reference.digest is not None:
        raise ArchiveError(
            f"--to {text} names a digest, but the digest is the archive's: give a name and a tag, "
            "e.g. registry.example.org/lab/model:paper."
        )
    return reference


def restore(
    path: Path,
    registry: RegistryClient,
    to: ImageReference,
    progress: ocilayout.Progress | None = None,
) -> Restored:
    contents = verifyarchive.read(path, progress)
    result, held, _document = verifyarchive.judge(contents, str(path), None, None)
    failed = [
        f"{finding.check}: {finding.detail}"
        for finding in result.findings
        if finding.status == "fail" and finding.check in INTACT
    ]
    if failed or held is None:
        raise ArchiveError(
            f"{path} is damaged, so nothing was pushed: {'; '.join(failed)}. Get the file again "
            "from the deposit and check its sha256."
        )
    blobs = _push_blobs(path, registry, to, contents, held)
    tag = to.tag or "latest"
    digest = registry.push_manifest(to, tag, held.image_member.data or b"", held.media_type)
    if digest != held.image_member.digest:
        raise RegistryError(
            f"{to.registry} stored the manifest as {digest}, not {held.image_member.digest}: "
            "it rewrote it, so the restored image is not the published one. Restore to another "
            "registry."
        )
    subject: Descriptor = {
        "mediaType": held.media_type,
        "digest": digest,
        "size": held.image_member.size,
    }
    documents: list[Document] = [item.document for item in held.carried]
    pinned = ImageReference.parse(f"{to.written_name}@{digest}")
    _carried, via = referrers.push(registry, pinned, subject, documents)
    return Restored(
        f"{to.written_name}@{digest}",
        f"{to.written_name}:{tag}",
        blobs,
        [document.kind.name for document in documents],
        via,
    )


def _push_blobs(
    path: Path, registry: RegistryClient, to: ImageReference, contents: Contents, held: Held
) -> int:
    config = held.image.get("config") or {}
    digests = dict.fromkeys(
        str(blob.get("digest")) for blob in (config, *(held.image.get("layers") or []))
    )
    with path.open("rb") as handle:
        for digest in digests:
            member = contents.blob(digest)
            if member is None:  # judged above; a blob cannot go missing in between
                raise ArchiveError(
                    f"{path} changed while it was restored ({digest} is gone): leave the file "
                    "alone while `restore` runs, and run it again."
                )
            handle.seek(member.offset)
            registry.push_blob(to, digest, member.size, handle)
    return len(digests)
