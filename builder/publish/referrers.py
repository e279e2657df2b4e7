"""The published documents beside the image in its registry, as OCI artifacts that refer to it.

Each artifact manifest names the image as its `subject`. A registry with the OCI 1.1 referrers
API lists them under `GET /v2/<name>/referrers/<digest>`; one without it (Docker's
distribution 2.x, GHCR in 2026) finds them by the tag-schema fallback cosign uses, a tag
`sha256-<hex>.<kind>` per document. Both are written, so either kind of reader finds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from builder.engine.registry import OCI_MANIFEST, json_object
from builder.publish import artifacts
from builder.publish.artifacts import Artifact, Descriptor, Document
from builder.reference import ImageReference

if TYPE_CHECKING:
    from builder.engine.registry import RegistryClient

MAX_DOCUMENT = 64 << 20  # a document larger than this is not one of ours


@dataclass(frozen=True)
class Found:
    documents: dict[str, Document]  # by kind name
    via: str  # "referrers API" or "tag schema"


def fallback_tag(digest: str, kind: str) -> str:
    return f"{digest.replace(':', '-')}.{kind}"


def push(
    registry: RegistryClient, image: ImageReference, subject: Descriptor, documents: list[Document]
) -> tuple[list[Artifact], str]:
    """Push each document as an artifact referring to `subject`: by digest where the registry
    has the referrers API (it lists them itself), else under its fallback tag; the artifacts
    pushed, and how they are found."""
    carried = [artifacts.artifact(document, subject) for document in documents]
    has_api = registry.referrers(image, subject["digest"]) is not None
    registry.push_blob(image, artifacts.digest_of(artifacts.EMPTY), 2, artifacts.EMPTY)
    for item in carried:
        data = item.document.data
        registry.push_blob(image, item.document.digest, len(data), data)
        target = (
            item.digest if has_api else fallback_tag(subject["digest"], item.document.kind.name)
        )
        registry.push_manifest(image, target, item.manifest, OCI_MANIFEST)
    return carried, "referrers API" if has_api else "tag schema"


def discover(registry: RegistryClient, image: ImageReference, digest: str) -> Found:
    """The documents that refer to the image `digest`: through the referrers API where the
    registry has it, else through the fallback tags."""
    listed = registry.referrers(image, digest)
    if listed is not None:
        targets = [str(entry.get("digest")) for entry in listed]
        return Found(_documents(registry, image, digest, targets), "referrers API")
    tags = set(registry.tags(image))
    targets = [
        fallback_tag(digest, kind.name)
        for kind in artifacts.KINDS
        if fallback_tag(digest, kind.name) in tags
    ]
    return Found(_documents(registry, image, digest, targets), "tag schema")


def _documents(
    registry: RegistryClient, image: ImageReference, digest: str, targets: list[str]
) -> dict[str, Document]:
    found: dict[str, Document] = {}
    for target in targets:
        document = _document(registry, image, digest, target)
        if document is not None:
            found.setdefault(document.kind.name, document)
    return found


def _document(
    registry: RegistryClient, image: ImageReference, digest: str, target: str
) -> Document | None:
    body, _media_type = registry.manifest(image, target)
    manifest = json_object(body, "an artifact manifest", image, artifacts.REGISTRY_FIX)
    kind = artifacts.kind_of(manifest)
    layer = artifacts.document_layer(manifest)
    subject = manifest.get("subject")
    if kind is None or layer is None or not isinstance(subject, dict):
        return None
    if subject.get("digest") != digest or layer.get("size", MAX_DOCUMENT + 1) > MAX_DOCUMENT:
        return None
    chunks: list[bytes] = []
    registry.read_blob(image, str(layer.get("digest")), chunks.append)
    return Document(kind, b"".join(chunks))
