"""`publish --archive FILE` and `restore`: the published image and its documents in one tar.

The archive is an OCI image layout of the exact image the registry holds: its manifest's bytes
and every blob as the registry serves them (hashed as they stream in), so the manifest digest
inside is the published one. The documents (manifest, lock, SBOM, provenance, signatures) ride
along as artifacts that refer to the image. A deposit (Zenodo: 100 files a record) needs one
file, and one sha256 to cite; `docker load` and `apptainer build x.sif docker-archive://FILE`
take it as it is. `restore` pushes it back to any registry under the same manifest digest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from builder import files, scratch
from builder.engine.registry import json_object
from builder.errors import ArchiveError, RegistryError
from builder.publish import artifacts, ocilayout
from builder.publish.artifacts import Artifact, Descriptor, Document
from builder.reference import ImageReference

if TYPE_CHECKING:
    from builder.engine.registry import RegistryClient

PARTIAL = ".partial-"
Progress = Callable[[int, int], None]  # bytes done, bytes in all


@dataclass(frozen=True)
class Written:
    path: Path
    sha256: str
    size: int  # of the archive
    image_bytes: int  # the image's manifest and blobs as the registry stores them
    blobs: int


@dataclass(frozen=True)
class Image:
    """The pushed image as the registry serves it."""

    reference: ImageReference  # name@sha256:...
    manifest: bytes
    media_type: str
    config: Descriptor
    layers: list[Descriptor]

    @property
    def stored_bytes(self) -> int:
        """The manifest and the blobs, as many bytes as the registry stores for the image."""
        return len(self.manifest) + sum(blob["size"] for blob in self.blobs)

    @property
    def descriptor(self) -> Descriptor:
        return {
            "mediaType": self.media_type,
            "digest": artifacts.digest_of(self.manifest),
            "size": len(self.manifest),
        }

    @property
    def blobs(self) -> list[Descriptor]:
        """The config and the layers, each once (an image may repeat a layer)."""
        seen: dict[str, Descriptor] = {}
        for blob in (self.config, *self.layers):
            seen.setdefault(blob["digest"], blob)
        return list(seen.values())


def fetch_image(registry: RegistryClient, pushed: str) -> Image:
    """The image manifest of `pushed` (name@sha256:...) as the registry holds it."""
    reference = ImageReference.parse(pushed)
    if reference.digest is None:
        raise ArchiveError(f"{pushed} is not pinned by digest: publish pushes the build first.")
    body, media_type = registry.manifest(reference, reference.digest)
    manifest = json_object(body, "an image manifest", reference, artifacts.REGISTRY_FIX)
    config, layers = manifest.get("config"), manifest.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, list) or not _descriptors(layers):
        raise RegistryError(
            f"{reference.registry} serves {pushed} as a manifest without a config and layers: "
            "it is not a container image (an index or an artifact). Publish an image."
        )
    media_type = media_type or str(manifest.get("mediaType"))
    return Image(reference, body, media_type, cast("Descriptor", config), layers)


def _descriptors(items: list[Any]) -> bool:
    return all(
        isinstance(item, dict)
        and isinstance(item.get("digest"), str)
        and isinstance(item.get("size"), int)
        for item in items
    )


def write(
    path: Path,
    registry: RegistryClient,
    image: Image,
    *,
    documents: list[Document],
    repo_tag: str,
    progress: Progress | None = None,
) -> Written:
    """The archive at `path`, whole or not at all: it is written beside it and renamed into
    place; a leftover of a killed run is removed the next time."""
    remedy = "give --archive a path on a file system with room for the image."
    parent = path.parent
    with files.writing(path, remedy):
        parent.mkdir(parents=True, exist_ok=True)
        scratch.sweep(parent, f".{path.name}{PARTIAL}")
        with scratch.file(parent, f".{path.name}{PARTIAL}") as partial:
            sha256, size = _fill(
                partial, registry, image, documents=documents, repo_tag=repo_tag, progress=progress
            )
            partial.chmod(0o644)
            partial.replace(path)
    return Written(path, sha256, size, image.stored_bytes, len(image.blobs) + 1)


def _fill(
    partial: Path,
    registry: RegistryClient,
    image: Image,
    *,
    documents: list[Document],
    repo_tag: str,
    progress: Progress | None,
) -> tuple[str, int]:
    subject = image.descriptor
    carried = [artifacts.artifact(document, subject) for document in documents]
    total = image.stored_bytes
    reference = ImageReference.parse(repo_tag)
    with partial.open("wb") as handle:
        tar = ocilayout.TarWriter(
            handle, None if progress is None else lambda n: progress(n, total)
        )
        tar.add(ocilayout.LAYOUT_FILE, ocilayout.LAYOUT)
        ref_name = reference.tag or "latest"
        tar.add(ocilayout.INDEX_FILE, ocilayout.index(subject, carried, ref_name, repo_tag))
        layers = [layer["digest"] for layer in image.layers]
        docker = ocilayout.docker_manifest(image.config["digest"], layers, repo_tag)
        tar.add(ocilayout.DOCKER_MANIFEST_FILE, docker)
        for folder in ocilayout.FOLDERS:
            tar.folder(folder)
        tar.add(ocilayout.blob_name(subject["digest"]), image.manifest)
        for blob in image.blobs:
            _copy_blob(tar, registry, image.reference, blob)
        for name, data in _artifact_blobs(carried).items():
            tar.add(ocilayout.blob_name(name), data)
        sha256 = tar.close()
        handle.flush()
        os.fsync(handle.fileno())
    return sha256, tar.size


def _copy_blob(
    tar: ocilayout.TarWriter, registry: RegistryClient, source: ImageReference, blob: Descriptor
) -> None:
    digest, size = blob["digest"], blob["size"]
    tar.stream(
        ocilayout.blob_name(digest), size, lambda sink: registry.read_blob(source, digest, sink)
    )


def _artifact_blobs(carried: list[Artifact]) -> dict[str, bytes]:
    """Each artifact's manifest, its document and the empty config, each once, by digest."""
    blobs = {artifacts.digest_of(artifacts.EMPTY): artifacts.EMPTY}
    for item in carried:
        blobs[item.digest] = item.manifest
        blobs[item.document.digest] = item.document.data
    return blobs
