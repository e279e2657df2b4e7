"""The registry client's writes and exact reads against the real local registry (docker-registry
2.8.2 on 127.0.0.1): blobs and manifests pushed, read back byte for byte, an OCI artifact that
names an image as its subject, tags. Each test pushes to a repository of its own under
reprobuild-test/ (the registry has no delete; the blobs are small)."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from builder.engine.registry import RegistryClient
from builder.errors import RegistryError
from builder.reference import ImageReference
from tests.infra import REGISTRY

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
EMPTY = "application/vnd.oci.empty.v1+json"
ARTIFACT = "application/vnd.example+json"


class _CountingSession(requests.Session):
    """A real session that notes each request's method and path."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        self.sent.append((str(method), urlsplit(str(url)).path))
        return super().request(method, url, *args, **kwargs)


@dataclass(frozen=True)
class Pushed:
    reference: ImageReference  # by tag v1
    manifest: bytes
    digest: str
    blobs: dict[str, bytes]  # digest -> bytes: the two layers and the config


def _digest(content: bytes) -> str:
    return f"sha256:{hashlib.sha256(content).hexdigest()}"


def _descriptor(media_type: str, content: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(content), "size": len(content)}


@pytest.fixture
def client() -> Iterator[RegistryClient]:
    with RegistryClient(attempts=2, backoff_s=0.01) as registry:
        registry._session = _CountingSession()
        yield registry


@pytest.fixture
def repository() -> ImageReference:
    return ImageReference.parse(f"{REGISTRY}/reprobuild-test/write-{uuid.uuid4().hex[:12]}:v1")


@pytest.fixture
def pushed(client: RegistryClient, repository: ImageReference, tmp_path: Path) -> Pushed:
    """An OCI image of two layers (one of 3 MB streamed from a file) and a config, pushed by
    tag v1."""
    large = os.urandom(3 << 20)
    (tmp_path / "layer").write_bytes(large)
    small = b"a small layer\n"
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {}}).encode()
    with (tmp_path / "layer").open("rb") as source:
        client.push_blob(repository, _digest(large), len(large), source)
    client.push_blob(repository, _digest(small), len(small), small)
    client.push_blob(repository, _digest(config), len(config), config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": _descriptor(OCI_CONFIG, config),
            "layers": [_descriptor(OCI_LAYER, large), _descriptor(OCI_LAYER, small)],
        },
        indent=1,  # not the registry's own spacing: the bytes must come back as sent
    ).encode()
    digest = client.push_manifest(repository, "v1", manifest, OCI_MANIFEST)
    blobs = {_digest(content): content for content in (large, small, config)}
    return Pushed(repository, manifest, digest, blobs)


def test_a_pushed_image_reads_back_byte_for_byte(client: RegistryClient, pushed: Pushed) -> None:
    reference = pushed.reference
    assert pushed.digest == _digest(pushed.manifest)
    assert client.manifest(reference, pushed.digest) == (pushed.manifest, OCI_MANIFEST)
    assert client.manifest(reference, "v1") == (pushed.manifest, OCI_MANIFEST)
    for digest, content in pushed.blobs.items():
        received: list[bytes] = []
        assert client.read_blob(reference, digest, received.append, chunk=1 << 16) == len(content)
        assert b"".join(received) == content
        assert client.has_blob(reference, digest)
    assert not client.has_blob(reference, _digest(b"never pushed"))
    assert client.resolve(reference).digest == pushed.digest


def test_a_blob_the_registry_has_is_not_sent_again(client: RegistryClient, pushed: Pushed) -> None:
    assert isinstance(client._session, _CountingSession)
    large = max(pushed.blobs.values(), key=len)
    client._session.sent.clear()
    client.push_blob(pushed.reference, _digest(large), len(large), large)
    blob_path = f"/v2/{pushed.reference.repository}/blobs/{_digest(large)}"
    assert client._session.sent == [("HEAD", blob_path)]


def test_an_artifact_names_its_image_as_subject(client: RegistryClient, pushed: Pushed) -> None:
    reference = pushed.reference
    sbom = b'{"bomFormat": "CycloneDX"}'
    client.push_blob(reference, _digest(b"{}"), 2, b"{}")
    client.push_blob(reference, _digest(sbom), len(sbom), sbom)
    artifact = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ARTIFACT,
            "config": _descriptor(EMPTY, b"{}"),
            "layers": [_descriptor(ARTIFACT, sbom)],
            "subject": _descriptor(OCI_MANIFEST, pushed.manifest),
        }
    ).encode()
    digest = client.push_manifest(reference, _digest(artifact), artifact, OCI_MANIFEST)
    assert digest == _digest(artifact)
    assert client.manifest(reference, digest) == (artifact, OCI_MANIFEST)
    # docker-registry 2.8.2 has no referrers API (OCI distribution 1.1): 404 on that endpoint.
    assert client.referrers(reference, pushed.digest) is None
    assert client.referrers(reference, pushed.digest, ARTIFACT) is None


def test_tags_lists_every_tag(client: RegistryClient, pushed: Pushed) -> None:
    client.push_manifest(pushed.reference, "v2", pushed.manifest, OCI_MANIFEST)
    assert sorted(client.tags(pushed.reference)) == ["v1", "v2"]


def test_a_repository_that_does_not_exist_has_no_tags(
    client: RegistryClient, repository: ImageReference
) -> None:
    assert client.tags(repository) == []


def test_a_manifest_naming_a_blob_never_pushed_is_refused(
    client: RegistryClient, repository: ImageReference
) -> None:
    config = b"{}"
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": _descriptor(OCI_CONFIG, config)}
        | {"layers": []}
    ).encode()
    with pytest.raises(RegistryError) as refused:
        client.push_manifest(repository, "v1", manifest, OCI_MANIFEST)
    assert str(refused.value) == (
        f"{REGISTRY} refused the manifest v1 pushed to {repository.name} (HTTP 400: "
        "MANIFEST_BLOB_UNKNOWN): check that the registry accepts this content (OCI image "
        "manifests, every blob pushed before the manifest that names it), then push again."
    )


def test_a_blob_not_in_the_registry_is_named(
    client: RegistryClient, repository: ImageReference
) -> None:
    missing = _digest(b"never pushed")
    with pytest.raises(RegistryError) as refused:
        client.read_blob(repository, missing, lambda block: None)
    assert str(refused.value) == (
        f"{REGISTRY} has no blob {missing} in {repository.name} (HTTP 404): check the image "
        "name and tag."
    )
