"""The OCI image index of a multi-platform push: one entry per platform's image, which the engine
pushed first, by its manifest digest, media type, size and platform.

The index is written canonically (keys sorted, no spaces, the lock's platform order), and each
image's manifest digest is a function of the lock (two clean builds give one image, and pushing
either gives one manifest), so two pushes of one lock give one index digest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from builder.engine.registry import OCI_INDEX, RegistryClient
from builder.errors import RecordError
from builder.reference import ImageReference, pinned_reference

if TYPE_CHECKING:
    from builder.build.buildrecord import BuildRecord

# The variant every arm64 image names (the bootstrapped bases' config says v8, as registries'
# arm64 images do); amd64 images name none.
VARIANTS = {"linux/arm64": "v8"}


@dataclass(frozen=True)
class Pushed:
    """One platform's image as the engine pushed it: name@sha256:<manifest digest>."""

    platform: str
    pushed: str

    @classmethod
    def of(cls, record: BuildRecord) -> Pushed:
        if record.pushed is None:
            raise RecordError(
                f"the {record.platform} image {record.image} was not pushed, so no index can "
                "name it: run `reprobuild build --push REGISTRY/NAME:TAG`, which pushes every "
                "platform's image before their index."
            )
        return cls(record.platform, record.pushed)


def platform_object(platform: str) -> dict[str, str]:
    """An index entry's platform: {"os": "linux", "architecture": "arm64", "variant": "v8"}."""
    os_name, architecture = platform.split("/", 1)
    found = {"os": os_name, "architecture": architecture}
    if platform in VARIANTS:
        found["variant"] = VARIANTS[platform]
    return found


def index_bytes(entries: Sequence[dict[str, Any]]) -> bytes:
    """The index document of `entries` (mediaType, digest, size, platform), canonical."""
    document = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(entries)}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def push_index(reference: str, images: Sequence[Pushed]) -> str:
    """Push the index of `images` (already in the registry, in this order) at `reference`'s tag;
    name@sha256:<index digest>."""
    target = ImageReference.parse(reference)
    with RegistryClient() as registry:
        entries = [_entry(registry, image) for image in images]
        body = index_bytes(entries)
        digest = registry.push_manifest(target, target.tag or "latest", body, OCI_INDEX)
    return target.pinned(digest)


def _entry(registry: RegistryClient, image: Pushed) -> dict[str, Any]:
    pinned = pinned_reference(image.pushed)
    if pinned is None or pinned.digest is None:
        raise RecordError(
            f"the {image.platform} image was pushed as {image.pushed}, not as "
            "name@sha256:<digest>, so no index can name it: run `reprobuild build --push "
            "REGISTRY/NAME:TAG` again."
        )
    content, media_type = registry.manifest(pinned, pinned.digest)
    return {
        "mediaType": media_type,
        "digest": pinned.digest,
        "size": len(content),
        "platform": platform_object(image.platform),
    }
