"""The documents published with an image, each as an OCI 1.1 artifact that refers to it.

One artifact per document (the manifest, the lock, the SBOM, the provenance, and a DSSE
signature of the manifest and of the provenance): an image manifest whose `artifactType` says
what it carries, whose config is the empty descriptor, whose one layer is the document, and whose
`subject` is the image. The same manifests go into an archive's OCI layout and, beside the image,
into a registry (found there through the referrers API or its tag-schema fallback).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any, TypedDict, cast

from builder import layout
from builder.engine.registry import OCI_MANIFEST
from builder.lock.lockfile import LOCK_FILE

EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
TITLE = "org.opencontainers.image.title"
# What to do about a registry that serves a broken manifest of an image or an artifact.
REGISTRY_FIX = "Try again; if it persists, publish to (or restore into) another registry."
SIGNS = "dev.reprobuild.signs"  # on a signature's artifact: the kind of document it signs


class Descriptor(TypedDict, total=False):
    mediaType: str
    digest: str
    size: int
    artifactType: str
    annotations: dict[str, str]
    data: str


@dataclass(frozen=True)
class Kind:
    name: str
    media_type: str  # the document's, and the artifact's artifactType
    filename: str
    signs: str | None = None  # a signature: the kind it signs


DSSE = "application/vnd.dsse.envelope.v1+json"
KINDS = (
    Kind("manifest", "application/vnd.reprobuild.manifest.v1+json", layout.MANIFEST_FILE),
    Kind("lock", "application/vnd.reprobuild.lock.v1+toml", LOCK_FILE),
    Kind("sbom", "application/vnd.cyclonedx+json", layout.SBOM_FILE),
    Kind("provenance", "application/vnd.in-toto+json", layout.PROVENANCE_FILE),
    Kind("manifest-signature", DSSE, layout.MANIFEST_SIGNATURE_FILE, signs="manifest"),
    Kind("provenance-signature", DSSE, layout.PROVENANCE_SIGNATURE_FILE, signs="provenance"),
)
BY_NAME = {kind.name: kind for kind in KINDS}


@dataclass(frozen=True)
class Document:
    kind: Kind
    data: bytes

    @property
    def digest(self) -> str:
        return digest_of(self.data)


@dataclass(frozen=True)
class Artifact:
    """An artifact manifest, as bytes, with the document it carries."""

    manifest: bytes
    document: Document

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    def descriptor(self) -> Descriptor:
        return {
            "mediaType": OCI_MANIFEST,
            "digest": self.digest,
            "size": len(self.manifest),
            "artifactType": self.document.kind.media_type,
            "annotations": kind_annotations(self.document.kind),
        }


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def empty_descriptor() -> Descriptor:
    return {
        "mediaType": EMPTY_TYPE,
        "digest": digest_of(EMPTY),
        "size": len(EMPTY),
        "data": base64.b64encode(EMPTY).decode(),
    }


def kind_annotations(kind: Kind) -> dict[str, str]:
    found = {TITLE: kind.filename}
    if kind.signs:
        found[SIGNS] = kind.signs
    return found


def artifact(document: Document, subject: Descriptor) -> Artifact:
    """The artifact manifest that carries `document` and refers to `subject` (the image)."""
    kind = document.kind
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": kind.media_type,
        "config": empty_descriptor(),
        "layers": [
            {
                "mediaType": kind.media_type,
                "digest": document.digest,
                "size": len(document.data),
                "annotations": {TITLE: kind.filename},
            }
        ],
        "subject": subject,
        "annotations": kind_annotations(kind),
    }
    return Artifact(canonical(manifest), document)


def canonical(document: object) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def kind_of(manifest: dict[str, Any]) -> Kind | None:
    """The kind of document an artifact manifest carries; None for anything else."""
    artifact_type = manifest.get("artifactType")
    signs = (manifest.get("annotations") or {}).get(SIGNS)
    for kind in KINDS:
        if kind.media_type == artifact_type and kind.signs == signs:
            return kind
    return None


def document_layer(manifest: dict[str, Any]) -> Descriptor | None:
    """The one layer of an artifact manifest, the document; None when it has not exactly one."""
    layers = manifest.get("layers")
    if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
        return None
    return cast("Descriptor", layers[0])  # a dict; its fields are read with .get
