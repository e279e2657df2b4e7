"""The OCI distribution client against the real local registry (docker-registry on 127.0.0.1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from builder.engine.registry import RegistryClient
from builder.errors import RegistryError
from builder.reference import ImageReference
from tests.infra import ARM64_BASE, REGISTRY


def test_tag_resolves_to_the_pushed_manifest_digest(test_base: str) -> None:
    with RegistryClient() as client:
        resolved = client.resolve(ImageReference.parse(test_base))
    manifest = requests.get(
        f"http://{REGISTRY}/v2/reprobuild-test/debian-python/manifests/bookworm",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )
    assert resolved.digest == manifest.headers["Docker-Content-Digest"]
    assert resolved.index_digest is None
    assert resolved.config_digest == manifest.json()["config"]["digest"]
    assert resolved.env_value("LANG") == "C.UTF-8"


def test_digest_reference_is_verified(test_base: str) -> None:
    with RegistryClient() as client:
        digest = client.resolve(ImageReference.parse(test_base)).digest
        pinned = client.resolve(ImageReference.parse(f"{test_base.rsplit(':', 1)[0]}@{digest}"))
    assert pinned.digest == digest


@pytest.fixture(autouse=True)
def _delete_pushed_indexes() -> Iterator[None]:
    """Remove the index manifests a test pushed, so the registry holds only the test base."""
    yield
    for repository, digest in _PUSHED:
        requests.delete(f"http://{REGISTRY}/v2/{repository}/manifests/{digest}", timeout=10)
    _PUSHED.clear()


_PUSHED: list[tuple[str, str]] = []


def _put_index(repository: str, tag: str, entries: list[dict[str, Any]]) -> str:
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }
    response = requests.put(
        f"http://{REGISTRY}/v2/{repository}/manifests/{tag}",
        data=json.dumps(index),
        headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
        timeout=10,
    )
    response.raise_for_status()
    digest = str(response.headers["Docker-Content-Digest"])
    _PUSHED.append((repository, digest))
    return digest


def _bookworm_entry() -> dict[str, Any]:
    """The test base's manifest as an index entry (no platform yet)."""
    manifest = requests.get(
        f"http://{REGISTRY}/v2/reprobuild-test/debian-python/manifests/bookworm",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )
    return {
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "digest": manifest.headers["Docker-Content-Digest"],
        "size": len(manifest.content),
    }


def test_manifest_list_picks_linux_amd64(test_base: str) -> None:
    repository = "reprobuild-test/debian-python"
    entry = _bookworm_entry()
    index_digest = _put_index(
        repository,
        "multi",
        [
            {**entry, "platform": {"os": "linux", "architecture": "arm64"}},
            {**entry, "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    )
    with RegistryClient() as client:
        resolved = client.resolve(ImageReference.parse(f"{REGISTRY}/{repository}:multi"))
    assert resolved.index_digest == index_digest
    assert resolved.digest == entry["digest"]


def test_index_without_amd64_is_refused(test_base: str) -> None:
    repository = "reprobuild-test/debian-python"
    entry = {**_bookworm_entry(), "platform": {"os": "linux", "architecture": "arm64"}}
    _put_index(repository, "armonly", [entry])
    with RegistryClient() as client, pytest.raises(RegistryError) as caught:
        client.resolve(ImageReference.parse(f"{REGISTRY}/{repository}:armonly"))
    assert str(caught.value) == (
        f"{REGISTRY}/{repository}:armonly has no linux/amd64 image (it has linux/arm64); choose "
        "a base built for linux/amd64."
    )


def test_an_index_gives_the_platform_asked_for(test_base: str) -> None:
    repository = "reprobuild-test/debian-python"
    amd64 = _bookworm_entry()
    with RegistryClient() as client:
        arm = client.resolve(ImageReference.parse(ARM64_BASE), "linux/arm64")
    arm64 = {**amd64, "digest": arm.digest}
    _put_index(
        repository,
        "both",
        [
            {**amd64, "platform": {"os": "linux", "architecture": "amd64"}},
            {**arm64, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ],
    )
    reference = ImageReference.parse(f"{REGISTRY}/{repository}:both")
    with RegistryClient() as client:
        chosen = client.resolve(reference, "linux/arm64")
        default = client.resolve(reference)
    assert (chosen.digest, chosen.config_digest) == (arm.digest, arm.config_digest)
    assert default.digest == amd64["digest"]


def test_an_image_of_another_platform_is_refused_when_one_is_asked_for(test_base: str) -> None:
    with RegistryClient() as client:
        taken = client.resolve(ImageReference.parse(ARM64_BASE))  # no platform: as it is
        with pytest.raises(RegistryError) as caught:
            client.resolve(ImageReference.parse(ARM64_BASE), "linux/amd64")
    assert taken.digest.startswith("sha256:")
    assert str(caught.value) == (
        f"{ARM64_BASE} is a linux/arm64 image, and this image is for linux/amd64: choose a base "
        "built for linux/amd64 (or a multi-platform tag that has one)."
    )


def test_unknown_tag_is_a_clear_error(test_base: str) -> None:
    with RegistryClient() as client, pytest.raises(RegistryError) as caught:
        client.resolve(ImageReference.parse(f"{REGISTRY}/reprobuild-test/nothing:here"))
    assert str(caught.value) == (
        f"{REGISTRY} has no {REGISTRY}/reprobuild-test/nothing:here (HTTP 404): check the image "
        "name and tag."
    )


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "name"),
    [
        (
            "python:3.11-slim-bookworm",
            "registry-1.docker.io",
            "library/python",
            "3.11-slim-bookworm",
            "python",
        ),
        (
            "nvidia/cuda:12.4.1-devel-ubuntu22.04",
            "registry-1.docker.io",
            "nvidia/cuda",
            "12.4.1-devel-ubuntu22.04",
            "nvidia/cuda",
        ),
        ("127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b", "latest", "127.0.0.1:5000/a/b"),
        ("ghcr.io/org/img:1", "ghcr.io", "org/img", "1", "ghcr.io/org/img"),
    ],
)
def test_reference_parsing(text: str, registry: str, repository: str, tag: str, name: str) -> None:
    reference = ImageReference.parse(text)
    assert (reference.registry, reference.repository, reference.tag, reference.name) == (
        registry,
        repository,
        tag,
        name,
    )
